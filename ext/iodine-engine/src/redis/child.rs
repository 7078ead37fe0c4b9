//! The Redis process of a cluster: it holds one engine's two connections and speaks to the
//! master over its end of a socket pair, in [`wire`](crate::cluster::wire) frames:
//! - from the master: `Subscribe`/`Unsubscribe` (the cluster-wide interest), `EnginePublish`,
//!   `Command` (no arguments: the stats);
//! - to the master: `Message` (what Redis sent) and `Reply`.
//!
//! It runs until the master's end closes (the master stopped, or died). Messages from Redis
//! wait in a bounded queue for the master's socket: when the master does not read, the
//! subscriber stops reading Redis, and Redis keeps (or, past its client output limit, drops)
//! what it could not send. Replies are bounded by the commands the master sent.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::resp::{self, Reply};
use super::{Redis, Settings};
use crate::cluster::wire::{Decoder, Frame, MAX_CHANNEL, MAX_MESSAGE};

/// Runs the Redis process's loop over `stream` (its end of the pair) until the master's end
/// closes. Blocks the calling thread (it makes its own single-threaded runtime).
pub fn run(stream: std::os::unix::net::UnixStream, settings: Arc<Settings>) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(stream, settings))
}

async fn serve(stream: std::os::unix::net::UnixStream, settings: Arc<Settings>) -> io::Result<()> {
    stream.set_nonblocking(true)?;
    let stream = UnixStream::from_std(stream)?;
    let (mut reading, mut writing) = stream.into_split();
    let (redis, mut deliveries) = Redis::start(
        settings,
        std::iter::empty(),
        &tokio::runtime::Handle::current(),
    );
    // Replies: as many as the commands the master sent (bounded by their queue), never waited
    // for. Messages: through the delivery queue, so a master that does not read stops the
    // reading of Redis.
    let (replies, mut to_send) = mpsc::unbounded_channel::<Bytes>();
    let writer = tokio::spawn(async move {
        loop {
            let bytes = tokio::select! {
                biased;
                Some(reply) = to_send.recv() => reply,
                Some(d) = deliveries.recv() => {
                    let room = MAX_MESSAGE - 4 - d.pattern.as_ref().map_or(0, |p| p.len());
                    if d.channel.len() > MAX_CHANNEL || d.message.len() > room {
                        crate::error!(
                            "Redis: a message of {} bytes on a channel of {} is too large for the cluster; dropped",
                            d.message.len(),
                            d.channel.len()
                        );
                        continue;
                    }
                    Frame::Message { pattern: d.pattern, channel: d.channel, message: d.message }.to_bytes()
                }
                else => return,
            };
            if writing.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    let mut decoder = Decoder::new();
    loop {
        decoder.buffer().reserve(64 * 1024);
        match reading.read_buf(decoder.buffer()).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
        loop {
            let frame = match decoder.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    crate::error!("Redis process: the master sent a broken frame ({})", e.0);
                    redis.stop();
                    writer.abort();
                    return Ok(());
                }
            };
            handle(&redis, &replies, frame);
        }
    }
    // The master let go (it stopped, after its workers): what they published last still goes
    // out (up to a second), then the connections close.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
    while !redis.idle() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    redis.stop();
    writer.abort();
    Ok(())
}

fn handle(redis: &Redis, replies: &mpsc::UnboundedSender<Bytes>, frame: Frame) {
    match frame {
        Frame::Subscribe { name, pattern } => redis.interest(name, pattern, true),
        Frame::Unsubscribe { name, pattern } => redis.interest(name, pattern, false),
        Frame::EnginePublish {
            channel, message, ..
        } => redis.publish(channel, message),
        Frame::Command { id, args, .. } => {
            let reply_to = {
                let replies = replies.clone();
                move |reply: Reply| {
                    let _ = replies.send(
                        Frame::Reply {
                            id,
                            reply: reply.to_bytes(),
                        }
                        .to_bytes(),
                    );
                }
            };
            match command_args(&args) {
                Some(args) if args.is_empty() => reply_to(redis.stats().to_reply()),
                Some(args) => redis.command(args, Box::new(reply_to)),
                None => reply_to(Reply::failure("ERR iodine: a broken command")),
            }
        }
        // Not meant for this process.
        Frame::Publish { .. } | Frame::Message { .. } | Frame::Reply { .. } => {}
    }
}

/// The arguments of a command as carried (a RESP array of bulk strings).
pub fn command_args(args: &[u8]) -> Option<Vec<Bytes>> {
    match resp::decode(args).ok()? {
        Reply::Array(items) => items
            .into_iter()
            .map(|i| match i {
                Reply::Bulk(b) => Some(b),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// The arguments of a command, to carry them.
pub fn encode_args(args: &[Bytes]) -> Bytes {
    let mut out = bytes::BytesMut::new();
    resp::encode_command(args, &mut out);
    out.freeze()
}
