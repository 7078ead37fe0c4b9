//! A worker's link to the master, on the worker's tokio runtime: what the master routes here
//! is delivered through the local broker; what this process publishes for the cluster, and
//! which channels it has subscribers for, go up.

use std::io;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::wire::{Decoder, Frame, Reach};
use super::Uplink;
use crate::pubsub::{broker, Watcher};

/// The worker's uplink (and the broker's watcher): frames for the master are queued for the
/// link's writer task.
pub struct WorkerLink {
    tx: mpsc::UnboundedSender<Bytes>,
}

impl WorkerLink {
    fn send(&self, frame: Frame) {
        let _ = self.tx.send(frame.to_bytes());
    }
}

impl Uplink for WorkerLink {
    fn publish(&self, reach: Reach, channel: Bytes, message: Bytes) {
        if !Frame::fits(&channel, &message) {
            crate::error!(
                "cluster: a message of {} bytes is too large to publish",
                message.len()
            );
            return;
        }
        if reach == Reach::Cluster {
            broker().publish(&channel, &message); // here first; the master skips this worker
        }
        self.send(Frame::Publish {
            reach,
            channel,
            message,
        });
    }
}

impl Watcher for WorkerLink {
    fn interest(&self, name: &Bytes, pattern: bool, on: bool) {
        let name = name.clone();
        self.send(match on {
            true => Frame::Subscribe { name, pattern },
            false => Frame::Unsubscribe { name, pattern },
        });
    }
}

/// Starts the link over `stream` (the worker's end of its socket pair) on the current
/// runtime, watching the broker so the master learns this process's subscriptions (those
/// made before now included). `lost` runs if the master's end closes: the master died.
pub fn start(
    stream: std::os::unix::net::UnixStream,
    lost: impl FnOnce() + Send + 'static,
) -> io::Result<Arc<WorkerLink>> {
    stream.set_nonblocking(true)?;
    let stream = tokio::net::UnixStream::from_std(stream)?;
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let link = Arc::new(WorkerLink { tx });
    tokio::spawn(async move {
        let mut batch = BytesMut::new();
        while let Some(first) = rx.recv().await {
            batch.extend_from_slice(&first);
            while let Ok(more) = rx.try_recv() {
                batch.extend_from_slice(&more);
            }
            if writer.write_all(&batch).await.is_err() {
                return;
            }
            batch.clear();
        }
    });
    tokio::spawn(async move {
        let mut decoder = Decoder::new();
        'reading: loop {
            decoder.buffer().reserve(64 * 1024);
            match reader.read_buf(decoder.buffer()).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            loop {
                match decoder.next_frame() {
                    Ok(Some(Frame::Publish {
                        channel, message, ..
                    })) => {
                        broker().publish(&channel, &message);
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        crate::error!("cluster: the master sent a broken frame ({})", e.0);
                        break 'reading;
                    }
                }
            }
        }
        lost();
    });
    broker().watch(Some(link.clone()));
    for (name, pattern) in broker().names() {
        link.interest(&name, pattern, true);
    }
    Ok(link)
}
