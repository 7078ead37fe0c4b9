//! The SUBSCRIBE connection: iodine's own, on the RESP [`Decoder`], because a message must
//! reach iodine with its channel as bytes (fred's subscriber drops non-UTF-8 channel names)
//! and with the pattern that matched it (a message that matches a channel and a pattern
//! arrives twice, once for each: each copy goes only to the subscribers of what it matched).
//!
//! The task connects (with backoff), authenticates, subscribes to every channel and pattern
//! of [`Shared::wanted`], then follows the changes; after each batch of (un)subscriptions it
//! waits for Redis' confirmations and then publishes how far it got ([`Shared::applied`]):
//! commands wait for that (the fence), so a PUBLISH never overtakes a SUBSCRIBE asked for
//! before it. A PING every `ping` seconds that is not answered by the next one means Redis
//! hangs: the connection is dropped and made again.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::resp::{encode_command, Decoder, Reply};
use super::{Delivery, Shared};

/// The first wait after a failed connection; it doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// The longest wait between two attempts: a Redis that restarts is heard again within it
/// (the C gem, measured, was back within 10 ms; a 1 s cap made ours take a second). An
/// attempt costs a connect to a port that refuses; the error lines are limited apart.
pub const MAX_BACKOFF: Duration = Duration::from_millis(100);
/// How long connecting (and the AUTH answer) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a connection ended.
enum Ended {
    /// The engine stops.
    Stopped,
    /// Broken, refused or silent: try again.
    Failed(String),
}

/// Runs the subscriber until the engine stops.
pub(super) async fn run(shared: Arc<Shared>, deliveries: mpsc::Sender<Delivery>) {
    let mut backoff = FIRST_BACKOFF;
    let mut connected_once = false;
    let mut attempt = 0;
    loop {
        if shared.stopped() {
            return;
        }
        let started = tokio::time::Instant::now();
        attempt += 1;
        match session(&shared, &deliveries, &mut connected_once, attempt).await {
            Ended::Stopped => return,
            Ended::Failed(why) => {
                shared.stats.connected.store(false, Ordering::Release);
                // Nothing is confirmed any more: commands wait for the resubscription.
                shared.applied.send_replace(0);
                shared.report(&format!("Redis subscriber: {why}"));
            }
        }
        // A connection that lived a while starts the backoff over.
        if started.elapsed() > Duration::from_secs(5) {
            backoff = FIRST_BACKOFF;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shared.stopping() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The host to subscribe on for attempt number `attempt`: a cluster broadcasts PUBLISH to
/// every node, so any node does (each attempt tries the next one listed, so a node that is
/// down is left for the others); a sentinel names the master.
async fn address(shared: &Shared, attempt: usize) -> Result<(String, u16), String> {
    use fred::types::config::ServerConfig;
    match &shared.settings.config.server {
        ServerConfig::Centralized { server } => Ok((server.host.to_string(), server.port)),
        ServerConfig::Clustered { hosts, .. } if !hosts.is_empty() => {
            let node = &hosts[attempt % hosts.len()];
            Ok((node.host.to_string(), node.port))
        }
        ServerConfig::Clustered { .. } => Err("no cluster node in the URL".to_string()),
        ServerConfig::Sentinel {
            hosts,
            service_name,
            ..
        } => {
            let mut last = "no sentinel in the URL".to_string();
            for s in hosts {
                match ask_sentinel(&s.host, s.port, service_name).await {
                    Ok(found) => return Ok(found),
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
        #[allow(unreachable_patterns)]
        _ => Err("this kind of Redis URL is not supported".to_string()),
    }
}

/// Asks a sentinel where the master of `service` is.
async fn ask_sentinel(host: &str, port: u16, service: &str) -> Result<(String, u16), String> {
    let mut stream = connect(host, port).await?;
    let reply = request(
        &mut stream,
        &mut Decoder::new(),
        &[
            &b"SENTINEL"[..],
            b"get-master-addr-by-name",
            service.as_bytes(),
        ],
    )
    .await?;
    match reply {
        Reply::Array(items) if items.len() == 2 => {
            let master = items[0]
                .as_bytes()
                .map(|b| String::from_utf8_lossy(b).into_owned());
            let master_port = items[1]
                .as_bytes()
                .and_then(|b| std::str::from_utf8(b).ok()?.parse().ok());
            match (master, master_port) {
                (Some(h), Some(p)) => Ok((h, p)),
                _ => Err(format!("sentinel {host}:{port} answered {items:?}")),
            }
        }
        other => Err(format!(
            "sentinel {host}:{port} does not know {service:?} ({other:?})"
        )),
    }
}

async fn connect(host: &str, port: u16) -> Result<TcpStream, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port))).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(format!("can't connect to {host}:{port} ({e})")),
        Err(_) => Err(format!("connecting to {host}:{port} timed out")),
    }
}

/// Sends one command and reads its reply (before the connection subscribes).
async fn request(
    stream: &mut TcpStream,
    decoder: &mut Decoder,
    args: &[&[u8]],
) -> Result<Reply, String> {
    let mut out = BytesMut::new();
    encode_command(args, &mut out);
    stream.write_all(&out).await.map_err(|e| e.to_string())?;
    let read = async {
        loop {
            if let Some(reply) = decoder.next_reply().map_err(|e| e.0)? {
                return Ok(reply);
            }
            match stream.read_buf(decoder.buffer()).await {
                Ok(0) => return Err("the connection closed".to_string()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, read)
        .await
        .map_err(|_| "no answer".to_string())?
}

/// Sends a command of the handshake (AUTH, PING); Err (the line to log) unless Redis
/// answered with a status.
async fn expect_status(
    stream: &mut TcpStream,
    decoder: &mut Decoder,
    args: &[&[u8]],
    host: &str,
    port: u16,
) -> Result<(), String> {
    let verb = String::from_utf8_lossy(args[0]);
    match request(stream, decoder, args).await {
        Ok(Reply::Status(_)) => Ok(()),
        Ok(Reply::Error(e)) => Err(format!(
            "{verb} refused by {host}:{port}: {}",
            String::from_utf8_lossy(&e)
        )),
        Ok(other) => Err(format!("{verb} answered {other:?}")),
        Err(e) => Err(format!("{host}:{port} did not answer {verb} ({e})")),
    }
}

/// One connection, from connect to its end.
async fn session(
    shared: &Arc<Shared>,
    deliveries: &mpsc::Sender<Delivery>,
    connected_once: &mut bool,
    attempt: usize,
) -> Ended {
    let (host, port) = match address(shared, attempt).await {
        Ok(a) => a,
        Err(e) => return Ended::Failed(e),
    };
    let mut stream = match connect(&host, port).await {
        Ok(s) => s,
        Err(e) => return Ended::Failed(e),
    };
    let mut decoder = Decoder::new();
    let config = &shared.settings.config;
    if let Some(password) = &config.password {
        let mut args: Vec<&[u8]> = vec![b"AUTH"];
        if let Some(user) = &config.username {
            args.push(user.as_bytes());
        }
        args.push(password.as_bytes());
        if let Err(e) = expect_status(&mut stream, &mut decoder, &args, &host, port).await {
            return Ended::Failed(e);
        }
    }
    // Connected means Redis answers: a stopped Redis still completes the TCP handshake (the
    // kernel accepts for it), so the connection counts only once a PING came back.
    if let Err(e) = expect_status(&mut stream, &mut decoder, &[b"PING"], &host, port).await {
        return Ended::Failed(e);
    }
    if *connected_once {
        shared.stats.reconnects.fetch_add(1, Ordering::Relaxed);
        crate::info!("Redis subscriber: connected again to {host}:{port}");
    } else {
        crate::info!("Redis subscriber: connected to {host}:{port}");
    }
    *connected_once = true;
    shared.stats.connected.store(true, Ordering::Release);
    Connection {
        shared: shared.clone(),
        stream,
        decoder,
        subscribed: HashSet::new(),
        awaiting: 0,
        batch: 0,
    }
    .serve(deliveries)
    .await
}

struct Connection {
    shared: Arc<Shared>,
    stream: TcpStream,
    decoder: Decoder,
    /// What Redis was asked to send on this connection.
    subscribed: HashSet<(Bytes, bool)>,
    /// Confirmations still to come for the last batch.
    awaiting: usize,
    /// The change counter the last batch brought the connection up to.
    batch: u64,
}

impl Connection {
    async fn serve(mut self, deliveries: &mpsc::Sender<Delivery>) -> Ended {
        let ping = self.shared.settings.ping;
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + ping, ping);
        let mut pinged = false;
        if let Err(e) = self.apply().await {
            return Ended::Failed(e);
        }
        let mut chunk = BytesMut::with_capacity(64 * 1024);
        loop {
            tokio::select! {
                read = self.stream.read_buf(&mut chunk) => {
                    match read {
                        Ok(0) => return Ended::Failed("Redis closed the connection".into()),
                        Ok(_) => {}
                        Err(e) => return Ended::Failed(format!("read failed ({e})")),
                    }
                    self.decoder.push(&chunk);
                    chunk.clear();
                    pinged = false; // anything heard means it is alive
                    loop {
                        let reply = match self.decoder.next_reply() {
                            Ok(Some(r)) => r,
                            Ok(None) => break,
                            Err(e) => return Ended::Failed(format!("Redis sent garbage ({})", e.0)),
                        };
                        if let Err(e) = self.heard(reply, deliveries).await {
                            return e;
                        }
                    }
                    // A long wait for room downstream is not Redis' silence.
                    ticker.reset();
                }
                _ = self.shared.changed.notified() => {
                    if let Err(e) = self.apply().await {
                        return Ended::Failed(e);
                    }
                }
                _ = ticker.tick() => {
                    if pinged {
                        return Ended::Failed(format!(
                            "Redis did not answer a PING in {} s; reconnecting",
                            ping.as_secs_f32()
                        ));
                    }
                    pinged = true;
                    if let Err(e) = self.write(&[&b"PING"[..]]).await {
                        return Ended::Failed(e);
                    }
                }
                _ = self.shared.stopping() => return Ended::Stopped,
            }
        }
    }

    async fn write(&mut self, args: &[&[u8]]) -> Result<(), String> {
        let mut out = BytesMut::new();
        encode_command(args, &mut out);
        self.write_all(&out).await
    }

    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|e| format!("write failed ({e})"))
    }

    /// Brings the connection's subscriptions to what is wanted now.
    async fn apply(&mut self) -> Result<(), String> {
        let (wanted, counter) = self.shared.wanted();
        let mut out = BytesMut::new();
        let mut asked = 0;
        for (name, pattern) in wanted.difference(&self.subscribed) {
            let verb: &[u8] = if *pattern {
                b"PSUBSCRIBE"
            } else {
                b"SUBSCRIBE"
            };
            encode_command(&[verb, name], &mut out);
            asked += 1;
        }
        for (name, pattern) in self.subscribed.difference(&wanted) {
            let verb: &[u8] = if *pattern {
                b"PUNSUBSCRIBE"
            } else {
                b"UNSUBSCRIBE"
            };
            encode_command(&[verb, name], &mut out);
            asked += 1;
        }
        self.subscribed = wanted;
        self.batch = counter;
        self.awaiting += asked;
        if !out.is_empty() {
            self.write_all(&out).await?;
        }
        self.confirm_if_done();
        Ok(())
    }

    fn confirm_if_done(&self) {
        if self.awaiting == 0 {
            self.shared.applied.send_if_modified(|at| {
                let moved = *at < self.batch;
                *at = (*at).max(self.batch);
                moved
            });
        }
    }

    /// Handles one frame from Redis.
    async fn heard(
        &mut self,
        reply: Reply,
        deliveries: &mpsc::Sender<Delivery>,
    ) -> Result<(), Ended> {
        let Reply::Array(mut items) = reply else {
            return match reply {
                Reply::Status(_) => Ok(()), // +PONG outside subscribed mode
                Reply::Error(e) => Err(Ended::Failed(format!(
                    "Redis refused a subscription: {}",
                    String::from_utf8_lossy(&e)
                ))),
                other => Err(Ended::Failed(format!("unexpected frame {other:?}"))),
            };
        };
        let kind = items
            .first()
            .and_then(Reply::as_bytes)
            .cloned()
            .unwrap_or_default();
        match &kind[..] {
            b"message" if items.len() == 3 => {
                let message = take_bytes(&mut items, 2);
                let channel = take_bytes(&mut items, 1);
                self.deliver(
                    deliveries,
                    Delivery {
                        pattern: None,
                        channel,
                        message,
                    },
                )
                .await
            }
            b"pmessage" if items.len() == 4 => {
                let message = take_bytes(&mut items, 3);
                let channel = take_bytes(&mut items, 2);
                let pattern = take_bytes(&mut items, 1);
                self.deliver(
                    deliveries,
                    Delivery {
                        pattern: Some(pattern),
                        channel,
                        message,
                    },
                )
                .await
            }
            b"subscribe" | b"psubscribe" | b"unsubscribe" | b"punsubscribe" => {
                self.awaiting = self.awaiting.saturating_sub(1);
                self.confirm_if_done();
                Ok(())
            }
            b"pong" => Ok(()),
            _ => Err(Ended::Failed(format!("unexpected frame {items:?}"))),
        }
    }

    async fn deliver(
        &self,
        deliveries: &mpsc::Sender<Delivery>,
        delivery: Delivery,
    ) -> Result<(), Ended> {
        self.shared
            .stats
            .messages_in
            .fetch_add(1, Ordering::Relaxed);
        // Waits for room: a consumer that falls behind slows the reading of this socket, and
        // Redis holds (or, past its output limit, drops) what it could not send.
        tokio::select! {
            sent = deliveries.send(delivery) => sent.map_err(|_| Ended::Stopped),
            _ = self.shared.stopping() => Err(Ended::Stopped),
        }
    }
}

fn take_bytes(items: &mut [Reply], i: usize) -> Bytes {
    match std::mem::replace(&mut items[i], Reply::Nil) {
        Reply::Bulk(b) | Reply::Status(b) => b,
        _ => Bytes::new(),
    }
}
