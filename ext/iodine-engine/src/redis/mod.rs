//! The Redis pub/sub engine: how an iodine deployment grows past one machine. Every server
//! subscribes in Redis to the channels (and patterns) it has subscribers for, and publishes
//! through Redis; Redis hands each message to every server subscribed, this one included,
//! which delivers it to its own subscribers. A message published through Redis is never
//! delivered here directly: it comes back from Redis once, so each subscriber gets it once.
//!
//! Two connections per cluster, whatever the number of workers:
//! - the SUBSCRIBE connection ([`subscriber`]): iodine's own, on [`resp`], so channel names
//!   stay bytes and each message says which pattern it matched;
//! - the command connection ([`commands`]): a fred client, for PUBLISH and `cmd` (fred brings
//!   AUTH with an ACL user, SELECT, reconnection, sentinels and clusters).
//!
//! # Where the connections live
//! In one process (`-w 1`, or `Iodine.start` from a script) the process holds them itself,
//! as tasks on its IO runtime. In a cluster they live in a small dedicated process, the
//! **Redis process** ([`child`]), forked by the master and supervised like a worker
//! (respawned when it dies, not replaced by a hot restart), which speaks to the master over
//! the cluster's wire like a worker. It was chosen over a thread in the master because the
//! master forks at any moment (respawns, USR1): a thread there would hold locks and sockets
//! at the fork (tokio's, fred's DNS threads', glibc's resolver, stderr's), and every worker
//! would inherit copies of the Redis sockets, keeping connections open that the master closed.
//! The Redis process has nothing the others need, and nothing is inherited from it.
//!
//! The master tells the Redis process the cluster-wide interest (a channel's first subscriber
//! anywhere, its last one), passes on the workers' publishes and commands, and routes what
//! comes back: each message to the processes subscribed to what it matched, each reply to the
//! process that asked.
//!
//! # Faults
//! Both connections reconnect with backoff (10 ms doubling to 100 ms; at most one error line
//! a second). The subscriber resubscribes everything; commands wait while a (re)subscription
//! is not confirmed yet (the fence), so a PUBLISH made here while Redis restarted is sent
//! after this server listens again. Commands wait in a bounded queue ([`COMMAND_QUEUE`]);
//! past it, or when the connection breaks with a command in flight, the command's reply is
//! an error (it is never sent twice). A PING every `ping` seconds (default 300) finds a Redis
//! that hangs: unanswered by the next one, the connection is made again.

pub mod child;
mod commands;
pub mod pending;
pub mod resp;
mod subscriber;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch, Notify};

pub use resp::Reply;

/// Commands (publishes included) that may wait for the connection; past it, their replies
/// are errors.
pub const COMMAND_QUEUE: usize = 8192;
/// Messages from Redis that may wait for delivery before the subscriber stops reading.
pub const DELIVERY_QUEUE: usize = 1024;
/// Longest URL accepted (section 6.6).
pub const MAX_URL: usize = 4096;
/// At most one error line per engine in this long (a Redis that is down or refuses the
/// password is tried again ten times a second).
pub const REPORT_EVERY: Duration = Duration::from_secs(1);
/// The ping interval when none is set (`ping: 0`): the C gem's five minutes.
pub const DEFAULT_PING: Duration = Duration::from_secs(300);

/// A parsed Redis URL and the engine's options.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The URL as given.
    pub url: String,
    config: fred::types::config::Config,
    /// Seconds between PINGs.
    pub ping: Duration,
}

impl Settings {
    /// Parses `url` (`redis://[user:password@]host[:port][/db]`, `redis-cluster://…`,
    /// `redis-sentinel://…`); `ping` 0 means [`DEFAULT_PING`]. The error is the text of an
    /// ArgumentError.
    pub fn parse(url: &str, ping: u64) -> Result<Settings, String> {
        const MALFORMED: &str = "Error initializing the Redis engine - malformed URL?";
        if url.len() > MAX_URL {
            return Err(format!("the Redis URL is longer than {MAX_URL} bytes"));
        }
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("redis" | "redis-cluster" | "redis-sentinel") => {}
            Some(s) if s.starts_with("rediss") => {
                return Err(format!(
                    "{s}:// (Redis over TLS) is not supported yet: use redis:// (and a TLS tunnel)"
                ))
            }
            _ => {
                return Err(format!(
                    "{MALFORMED} (expected redis://host:port, got {url:?})"
                ))
            }
        }
        let config = fred::types::config::Config::from_url(url)
            .map_err(|e| format!("{MALFORMED} ({})", e.details()))?;
        if let fred::types::config::ServerConfig::Centralized { server } = &config.server {
            if server.host.is_empty() {
                return Err(format!("{MALFORMED} (no host)"));
            }
        }
        Ok(Settings {
            url: url.to_string(),
            config,
            ping: match ping {
                0 => DEFAULT_PING,
                s => Duration::from_secs(s),
            },
        })
    }

    /// The URL with its password hidden (for logs and `inspect`), as written (encoded or not).
    pub fn display_url(&self) -> String {
        let Some((scheme, rest)) = self.url.split_once("://") else {
            return self.url.clone();
        };
        let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
        let Some(at) = authority.rfind('@') else {
            return self.url.clone();
        };
        let hidden = match authority[..at].split_once(':') {
            Some((user, _)) => format!("{user}:***"),
            None => "***".to_string(),
        };
        format!("{scheme}://{hidden}{}", &rest[at..])
    }
}

/// A message from Redis: for the subscribers of `pattern` (when it came through PSUBSCRIBE),
/// or of `channel` itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The pattern it matched (None: the channel was subscribed to by name).
    pub pattern: Option<Bytes>,
    /// The channel it was published to.
    pub channel: Bytes,
    /// The message.
    pub message: Bytes,
}

/// Where a command's reply goes (called once, on an IO thread).
pub type ReplyTo = Box<dyn FnOnce(Reply) + Send>;

/// The engine's counters.
#[derive(Default)]
struct Counters {
    connected: AtomicBool,
    reconnects: AtomicU64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    commands: AtomicU64,
    /// Commands sent and not answered yet.
    in_flight: AtomicU64,
}

/// What [`Redis::stats`] reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Whether the subscriber is connected (and so messages arrive).
    pub connected: bool,
    /// Reconnections after the first connection.
    pub reconnects: u64,
    /// Messages received from Redis.
    pub messages_in: u64,
    /// PUBLISHes Redis acknowledged.
    pub messages_out: u64,
    /// Commands Redis answered (PUBLISH included).
    pub commands: u64,
    /// Commands waiting to be sent.
    pub queued: u64,
}

impl Stats {
    /// The stats as a reply (carried from the Redis process): an array of integers.
    pub fn to_reply(&self) -> Reply {
        Reply::Array(
            [
                self.connected as u64,
                self.reconnects,
                self.messages_in,
                self.messages_out,
                self.commands,
                self.queued,
            ]
            .into_iter()
            .map(|n| Reply::Integer(n as i64))
            .collect(),
        )
    }

    /// The stats [`Stats::to_reply`] made (None for any other reply).
    pub fn from_reply(reply: &Reply) -> Option<Stats> {
        let Reply::Array(items) = reply else {
            return None;
        };
        let n: Vec<u64> = items
            .iter()
            .map(|i| match i {
                Reply::Integer(n) => Some(*n as u64),
                _ => None,
            })
            .collect::<Option<_>>()?;
        let [connected, reconnects, messages_in, messages_out, commands, queued] = n[..] else {
            return None;
        };
        Some(Stats {
            connected: connected != 0,
            reconnects,
            messages_in,
            messages_out,
            commands,
            queued,
        })
    }
}

/// What the engine's tasks share.
struct Shared {
    settings: Arc<Settings>,
    /// The channels and patterns wanted, and a counter of the changes made to them.
    wanted: Mutex<(HashSet<(Bytes, bool)>, u64)>,
    /// Wakes the subscriber after a change.
    changed: Notify,
    /// The change counter the subscriber has confirmed (Redis acknowledged).
    applied: watch::Sender<u64>,
    stop: watch::Sender<bool>,
    stats: Counters,
    /// When the last error line was written ([`REPORT_EVERY`]).
    reported: Mutex<Option<Instant>>,
}

impl Shared {
    fn wanted(&self) -> (HashSet<(Bytes, bool)>, u64) {
        self.wanted.lock().clone()
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Resolves once the engine stops.
    async fn stopping(&self) {
        let mut rx = self.stop.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Logs an error line, at most one per [`REPORT_EVERY`].
    fn report(&self, what: &str) {
        let mut last = self.reported.lock();
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < REPORT_EVERY) {
            return;
        }
        *last = Some(now);
        crate::error!("{what} ({})", self.settings.display_url());
    }
}

/// A running engine: its two connections are tasks on a runtime; dropping it stops them.
pub struct Redis {
    shared: Arc<Shared>,
    commands: mpsc::Sender<commands::Command>,
}

impl Redis {
    /// Starts the engine on `runtime`, subscribed to `wanted`. Messages from Redis arrive on
    /// the returned receiver (read it promptly: when it is full the subscriber stops reading).
    pub fn start(
        settings: Arc<Settings>,
        wanted: impl IntoIterator<Item = (Bytes, bool)>,
        runtime: &Handle,
    ) -> (Redis, mpsc::Receiver<Delivery>) {
        let shared = Arc::new(Shared {
            settings,
            wanted: Mutex::new((wanted.into_iter().collect(), 1)),
            changed: Notify::new(),
            applied: watch::Sender::new(0),
            stop: watch::Sender::new(false),
            stats: Counters::default(),
            reported: Mutex::new(None),
        });
        let (deliveries, received) = mpsc::channel(DELIVERY_QUEUE);
        let (commands, queue) = mpsc::channel(COMMAND_QUEUE);
        runtime.spawn(subscriber::run(shared.clone(), deliveries));
        runtime.spawn(commands::run(shared.clone(), queue));
        (Redis { shared, commands }, received)
    }

    /// The first subscriber of `name` (a pattern when `pattern`) appeared (`on`), or its last
    /// one left.
    pub fn interest(&self, name: Bytes, pattern: bool, on: bool) {
        {
            let mut wanted = self.shared.wanted.lock();
            let changed = match on {
                true => wanted.0.insert((name, pattern)),
                false => wanted.0.remove(&(name, pattern)),
            };
            if !changed {
                return;
            }
            wanted.1 += 1;
        }
        self.shared.changed.notify_one();
    }

    /// Publishes through Redis (every subscribed server, this one included, gets it from
    /// Redis).
    pub fn publish(&self, channel: Bytes, message: Bytes) {
        self.send(vec![Bytes::from_static(b"PUBLISH"), channel, message], None);
    }

    /// Sends a command; `reply` gets Redis' answer (an error when it could not be sent).
    pub fn command(&self, args: Vec<Bytes>, reply: ReplyTo) {
        self.send(args, Some(reply));
    }

    fn send(&self, args: Vec<Bytes>, reply: Option<ReplyTo>) {
        let command = commands::Command {
            args,
            after: self.shared.wanted.lock().1,
            publish: reply.is_none(),
            reply,
        };
        if let Err(e) = self.commands.try_send(command) {
            let command = match e {
                mpsc::error::TrySendError::Full(c) | mpsc::error::TrySendError::Closed(c) => c,
            };
            self.shared.report(&format!(
                "Redis: {COMMAND_QUEUE} commands wait for the connection; refusing more"
            ));
            if let Some(reply) = command.reply {
                reply(Reply::failure(
                    "ERR iodine: the Redis command queue is full (Redis unreachable?)",
                ));
            }
        }
    }

    /// The engine's counters now.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.stats;
        Stats {
            connected: c.connected.load(Ordering::Acquire),
            reconnects: c.reconnects.load(Ordering::Relaxed),
            messages_in: c.messages_in.load(Ordering::Relaxed),
            messages_out: c.messages_out.load(Ordering::Relaxed),
            commands: c.commands.load(Ordering::Relaxed),
            queued: (COMMAND_QUEUE - self.commands.capacity()) as u64,
        }
    }

    /// Whether no command waits or is in flight.
    pub fn idle(&self) -> bool {
        self.commands.capacity() == COMMAND_QUEUE
            && self.shared.stats.in_flight.load(Ordering::Acquire) == 0
    }

    /// Stops both connections (also when dropped).
    pub fn stop(&self) {
        self.shared.stop.send_replace(true);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `args` is a command `cmd` must refuse: it would turn the connection into a
/// subscriber (`(P)SUBSCRIBE`, `(P)UNSUBSCRIBE`, `SSUBSCRIBE`, `MONITOR`).
pub fn refused_command(name: &[u8]) -> bool {
    const REFUSED: [&[u8]; 7] = [
        b"SUBSCRIBE",
        b"PSUBSCRIBE",
        b"UNSUBSCRIBE",
        b"PUNSUBSCRIBE",
        b"SSUBSCRIBE",
        b"SUNSUBSCRIBE",
        b"MONITOR",
    ];
    REFUSED.iter().any(|r| r.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests;
