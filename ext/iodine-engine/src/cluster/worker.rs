//! A worker's link to the master, on the worker's tokio runtime: what the master routes here
//! is delivered through the local broker; what this process publishes for the cluster, and
//! which channels it has subscribers for, go up.
//!
//! Frames are written by the thread that makes them (the socket is non-blocking; what it
//! can't take waits for the writer task, in order). So a subscription is in the master's
//! socket before the subscribing callback returns: before its connection can tell its
//! client, and so before any publish that client may cause in another worker.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use parking_lot::Mutex;
use tokio::net::UnixStream;
use tokio::sync::Notify;

use super::wire::{Decoder, Frame, Reach};
use super::Uplink;
use crate::pubsub::{broker, Watcher};

/// The worker's uplink (and the broker's watcher).
pub struct WorkerLink {
    stream: Arc<UnixStream>,
    /// Bytes the socket did not take yet, in order (the writer task sends them).
    backlog: Mutex<VecDeque<Bytes>>,
    more: Notify,
}

impl WorkerLink {
    fn send(&self, frame: Frame) {
        let mut bytes = frame.to_bytes();
        let mut backlog = self.backlog.lock();
        if backlog.is_empty() {
            while !bytes.is_empty() {
                match self.stream.try_write(&bytes) {
                    Ok(n) => bytes.advance(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return, // the master is gone; the reader notices
                }
            }
            if bytes.is_empty() {
                return;
            }
        }
        backlog.push_back(bytes);
        drop(backlog);
        self.more.notify_one();
    }

    /// Writes the backlog as the socket takes it (the writer task).
    async fn drain(&self) {
        loop {
            self.more.notified().await;
            loop {
                if self.backlog.lock().is_empty() {
                    break;
                }
                if self.stream.writable().await.is_err() {
                    return;
                }
                let mut backlog = self.backlog.lock();
                while let Some(front) = backlog.front_mut() {
                    match self.stream.try_write(front) {
                        Ok(n) if n == front.len() => {
                            backlog.pop_front();
                        }
                        Ok(n) => front.advance(n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => return,
                    }
                }
            }
        }
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

    fn to_engine(&self, frame: Frame) {
        self.send(frame);
    }
}

impl Watcher for WorkerLink {
    fn interest(&self, name: &Bytes, pattern: bool, on: bool) {
        // The binding refuses such names; a frame the master can't take would cost this
        // worker its link (the master reads it as a broken peer).
        if name.len() > super::wire::MAX_CHANNEL {
            crate::error!(
                "cluster: a channel name of {} bytes is too long to subscribe",
                name.len()
            );
            return;
        }
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
    let stream = Arc::new(UnixStream::from_std(stream)?);
    let link = Arc::new(WorkerLink {
        stream: stream.clone(),
        backlog: Mutex::default(),
        more: Notify::new(),
    });
    let writer = link.clone();
    tokio::spawn(async move { writer.drain().await });
    tokio::spawn(async move {
        let mut decoder = Decoder::new();
        'reading: loop {
            if stream.readable().await.is_err() {
                break;
            }
            decoder.buffer().reserve(64 * 1024);
            match stream.try_read_buf(decoder.buffer()) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
            loop {
                match decoder.next_frame() {
                    Ok(Some(Frame::Publish {
                        channel, message, ..
                    })) => {
                        broker().publish(&channel, &message);
                    }
                    Ok(Some(Frame::Message {
                        pattern,
                        channel,
                        message,
                    })) => {
                        broker().deliver_from_redis(pattern.as_ref(), &channel, &message);
                    }
                    Ok(Some(Frame::Reply { id, reply })) => {
                        let reply = crate::redis::resp::decode(&reply).unwrap_or_else(|e| {
                            crate::redis::Reply::failure(format!(
                                "ERR iodine: a broken reply ({})",
                                e.0
                            ))
                        });
                        crate::redis::pending::complete(id, reply);
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
        crate::redis::pending::fail_all("ERR iodine: the cluster's master is gone");
        lost();
    });
    broker().watch(Some(link.clone()));
    for (name, pattern) in broker().names() {
        link.interest(&name, pattern, true);
    }
    Ok(link)
}
