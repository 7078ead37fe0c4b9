//! Talking to the Redis the servers under test share, over plain RESP (no client library):
//! waiting until every server subscribed the channel (`PUBSUB NUMSUB`), and publishing to it
//! directly (a pipeline of `PUBLISH`, the replies read by a task of their own).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::latency::bump;
use crate::stamp;
use crate::stats::Stats;
use crate::target::Target;

/// A channel on a Redis server, from `redis://HOST:PORT/CHANNEL`.
pub struct Channel {
    /// `host:port`.
    pub addr: String,
    /// The channel's name (the URL's path without its `/`).
    pub name: String,
}

impl Channel {
    /// Parses `redis://HOST:PORT/CHANNEL` (no password, no database: the benchmarks' own Redis).
    pub fn parse(url: &str) -> Result<Channel, String> {
        let target = Target::parse(url, "redis")?;
        let name = target.path.trim_start_matches('/').to_owned();
        if name.is_empty() {
            return Err(format!(
                "{url:?} names no channel (redis://HOST:PORT/CHANNEL)"
            ));
        }
        Ok(Channel {
            addr: target.addr,
            name,
        })
    }
}

/// A RESP command: an array of bulk strings.
fn command(parts: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", parts.len()).as_bytes());
    for part in parts {
        out.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
}

/// Opens a TCP connection to `addr`, Nagle off.
async fn connect(addr: &str) -> Result<TcpStream, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to Redis at {addr}: {e}"))?;
    tcp.set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    Ok(tcp)
}

/// Waits until `want` clients have subscribed `channel` (`PUBSUB NUMSUB`), polling every 20 ms
/// for at most `limit`; the count last seen is in the error.
pub async fn await_subscribers(
    channel: &Channel,
    want: u64,
    limit: Duration,
) -> Result<(), String> {
    let mut tcp = connect(&channel.addr).await?;
    let mut request = Vec::new();
    command(
        &[b"PUBSUB", b"NUMSUB", channel.name.as_bytes()],
        &mut request,
    );
    let start = Instant::now();
    loop {
        tcp.write_all(&request).await.map_err(|e| e.to_string())?;
        let mut reply = Vec::new();
        let count = loop {
            let mut chunk = [0_u8; 512];
            let len = tcp.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if len == 0 {
                return Err("Redis closed the connection".to_owned());
            }
            reply.extend_from_slice(&chunk[..len]);
            if let Some(count) = numsub(&reply, channel.name.as_bytes())? {
                break count;
            }
        };
        if count >= want {
            return Ok(());
        }
        if start.elapsed() >= limit {
            return Err(format!(
                "{} client(s) subscribed {:?} in Redis after {} s, not {want}",
                count,
                channel.name,
                limit.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The count in a complete `PUBSUB NUMSUB channel` reply (`*2 $len channel :N`), `None` while
/// it is incomplete.
fn numsub(reply: &[u8], channel: &[u8]) -> Result<Option<u64>, String> {
    let mut head = format!("*2\r\n${}\r\n", channel.len()).into_bytes();
    head.extend_from_slice(channel);
    head.extend_from_slice(b"\r\n:");
    if reply.len() < head.len() {
        return if head.starts_with(reply) {
            Ok(None)
        } else {
            Err(format!(
                "unexpected reply {:?}",
                String::from_utf8_lossy(reply)
            ))
        };
    }
    if !reply.starts_with(&head) {
        return Err(format!(
            "unexpected reply {:?}",
            String::from_utf8_lossy(reply)
        ));
    }
    let rest = &reply[head.len()..];
    let Some(end) = memmem::find(rest, b"\r\n") else {
        return Ok(None);
    };
    std::str::from_utf8(&rest[..end])
        .ok()
        .and_then(|n| n.parse().ok())
        .map(Some)
        .ok_or_else(|| format!("unexpected reply {:?}", String::from_utf8_lossy(reply)))
}

/// What the reply reader saw.
pub struct Replies {
    /// Replies read (one per PUBLISH).
    pub read: AtomicU64,
    /// The fewest receivers a PUBLISH reached (u64::MAX before the first reply).
    pub least: AtomicU64,
}

/// A direct publisher: `PUBLISH channel message` pipelined on one connection.
pub struct Publisher {
    write: OwnedWriteHalf,
    channel: Vec<u8>,
    /// The commands of one batch (reused).
    buffer: Vec<u8>,
    /// What the reply reader saw.
    pub replies: Arc<Replies>,
}

impl Publisher {
    /// Connects to `channel`'s Redis; a task reads the replies (an error reply or a broken
    /// connection is counted in `stats`).
    pub async fn connect(channel: &Channel, stats: Arc<Stats>) -> Result<Publisher, String> {
        let (read, write) = connect(&channel.addr).await?.into_split();
        let replies = Arc::new(Replies {
            read: AtomicU64::new(0),
            least: AtomicU64::new(u64::MAX),
        });
        tokio::spawn(read_replies(read, replies.clone(), stats));
        Ok(Publisher {
            write,
            channel: channel.name.as_bytes().to_vec(),
            buffer: Vec::new(),
            replies,
        })
    }

    /// Publishes the messages numbered `seqs` (each of `size` bytes, stamped now) in one write.
    pub async fn send(&mut self, seqs: std::ops::Range<u64>, size: usize) -> Result<(), String> {
        self.buffer.clear();
        for seq in seqs {
            let text = stamp::text(seq, size);
            command(
                &[b"PUBLISH", &self.channel, text.as_bytes()],
                &mut self.buffer,
            );
        }
        self.write
            .write_all(&self.buffer)
            .await
            .map_err(|e| format!("PUBLISH: {e}"))
    }
}

/// Reads the PUBLISH replies (integers: the receivers of each message) until the connection
/// ends; an error reply ends it too.
async fn read_replies(mut read: OwnedReadHalf, replies: Arc<Replies>, stats: Arc<Stats>) {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0_u8; 64 * 1024];
    loop {
        let len = match read.read(&mut chunk).await {
            Ok(0) => return,
            Ok(len) => len,
            Err(e) => return stats.error(format!("Redis publisher: {e}")),
        };
        buf.extend_from_slice(&chunk[..len]);
        let mut at = 0;
        while let Some(end) = memmem::find(&buf[at..], b"\r\n") {
            let line = &buf[at..at + end];
            at += end + 2;
            let receivers = line
                .strip_prefix(b":")
                .and_then(|n| std::str::from_utf8(n).ok())
                .and_then(|n| n.parse::<u64>().ok());
            let Some(receivers) = receivers else {
                return stats.error(format!(
                    "Redis answered PUBLISH with {:?}",
                    String::from_utf8_lossy(line)
                ));
            };
            bump(&replies.read, 1);
            if receivers < replies.least.load(Relaxed) {
                replies.least.store(receivers, Relaxed);
            }
        }
        buf.drain(..at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_commands() {
        let mut out = Vec::new();
        command(&[b"PUBLISH", b"ch", b"hi"], &mut out);
        assert_eq!(out, b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$2\r\nhi\r\n");
    }

    #[test]
    fn reads_numsub() {
        assert_eq!(
            numsub(b"*2\r\n$5\r\nbench\r\n:2\r\n", b"bench"),
            Ok(Some(2))
        );
        assert_eq!(numsub(b"*2\r\n$5\r\nbench\r\n:1", b"bench"), Ok(None));
        assert_eq!(numsub(b"*2\r\n$5\r\nbe", b"bench"), Ok(None));
        assert!(numsub(b"-ERR x\r\n", b"bench").is_err());
    }

    #[test]
    fn parses_channel_urls() {
        let c = Channel::parse("redis://127.0.0.1:6390/bench").unwrap();
        assert_eq!(
            (c.addr.as_str(), c.name.as_str()),
            ("127.0.0.1:6390", "bench")
        );
        assert!(Channel::parse("redis://127.0.0.1:6390/").is_err());
    }
}
