//! What the server is doing, counted as it happens (`Iodine.stats`, the `-metrics` page):
//! connections open by kind, requests by status class, bytes in and out, pub/sub traffic.
//!
//! Counters are relaxed atomics, one add per event: nothing on the request path takes a lock
//! or allocates. A reader takes a [`Snapshot`] (each counter read once, so the numbers of one
//! snapshot may be a moment apart) and can render it as Prometheus text ([`prometheus`]).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A kind of open connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An HTTP connection (HTTP/1.x or HTTP/2) that is still HTTP.
    Http,
    /// A WebSocket the server accepted.
    WebSocket,
    /// An EventSource stream the server accepted.
    Sse,
    /// A raw connection the server accepted (or an HTTP one taken with `upgrade.tcp`).
    Raw,
    /// A connection this process opened (`Iodine.connect`), whatever it speaks.
    Client,
}

/// One process's figures for the metrics page: its label (a cluster worker's slot; None for
/// a lone process), its counters, its pool.
pub type Process = (Option<String>, Snapshot, Pool);

/// A metric of the page that has one value per process: name, type, help, the value.
type Simple = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Snapshot, &Pool) -> u64,
);

/// Every kind, in the order a [`Snapshot`] lists them.
pub const KINDS: [Kind; 5] = [
    Kind::Http,
    Kind::WebSocket,
    Kind::Sse,
    Kind::Raw,
    Kind::Client,
];

impl Kind {
    /// The kind's name (`http`, `websocket`, `sse`, `raw`, `client`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::WebSocket => "websocket",
            Kind::Sse => "sse",
            Kind::Raw => "raw",
            Kind::Client => "client",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

struct Counters {
    open: [AtomicI64; 5],
    /// Requests answered, by status class (index 0: 1xx … 4: 5xx).
    requests: [AtomicU64; 5],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    published: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
}

static COUNTERS: Counters = Counters {
    open: [const { AtomicI64::new(0) }; 5],
    requests: [const { AtomicU64::new(0) }; 5],
    bytes_in: AtomicU64::new(0),
    bytes_out: AtomicU64::new(0),
    published: AtomicU64::new(0),
    delivered: AtomicU64::new(0),
    dropped: AtomicU64::new(0),
};

/// A connection of one kind, counted as open until dropped.
#[derive(Debug)]
pub struct Open(Kind);

impl Open {
    /// Counts a connection of `kind` as open.
    pub fn new(kind: Kind) -> Open {
        COUNTERS.open[kind.index()].fetch_add(1, Ordering::Relaxed);
        Open(kind)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        COUNTERS.open[self.0.index()].fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response with `status` was sent (or begun).
pub fn answered(status: u16) {
    let class = (status / 100).clamp(1, 5) as usize - 1;
    COUNTERS.requests[class].fetch_add(1, Ordering::Relaxed);
}

/// `n` bytes came from a peer.
pub fn read(n: usize) {
    if n > 0 {
        COUNTERS.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// `n` bytes went to a peer.
pub fn written(n: usize) {
    if n > 0 {
        COUNTERS.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// A message was published from this process.
pub fn published() {
    COUNTERS.published.fetch_add(1, Ordering::Relaxed);
}

/// A message (published here or elsewhere) reached `n` subscribers of this process.
pub fn delivered(n: usize) {
    if n > 0 {
        COUNTERS.delivered.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// A pub/sub message was not delivered to a connection that could not take it (its backlog
/// was full: the connection is closed as too slow).
pub fn dropped() {
    COUNTERS.dropped.fetch_add(1, Ordering::Relaxed);
}

/// The counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Open connections by kind, in [`KINDS`] order.
    pub open: [i64; 5],
    /// Requests answered by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    pub requests: [u64; 5],
    /// Bytes read from peers.
    pub bytes_in: u64,
    /// Bytes written to peers.
    pub bytes_out: u64,
    /// Messages published from this process.
    pub published: u64,
    /// Deliveries of published messages to this process's subscribers.
    pub delivered: u64,
    /// Messages a connection's full backlog refused.
    pub dropped: u64,
}

/// The counters now.
pub fn snapshot() -> Snapshot {
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    Snapshot {
        open: std::array::from_fn(|i| COUNTERS.open[i].load(Ordering::Relaxed).max(0)),
        requests: std::array::from_fn(|i| get(&COUNTERS.requests[i])),
        bytes_in: get(&COUNTERS.bytes_in),
        bytes_out: get(&COUNTERS.bytes_out),
        published: get(&COUNTERS.published),
        delivered: get(&COUNTERS.delivered),
        dropped: get(&COUNTERS.dropped),
    }
}

impl Snapshot {
    /// The sum of several processes' counters (a cluster's workers).
    pub fn sum<'a>(all: impl IntoIterator<Item = &'a Snapshot>) -> Snapshot {
        let mut total = Snapshot::default();
        for s in all {
            for i in 0..5 {
                total.open[i] += s.open[i];
                total.requests[i] += s.requests[i];
            }
            total.bytes_in += s.bytes_in;
            total.bytes_out += s.bytes_out;
            total.published += s.published;
            total.delivered += s.delivered;
            total.dropped += s.dropped;
        }
        total
    }
}

/// Figures of one process that are not counters of this module (the Ruby worker pool, the
/// number of channels), given by whoever knows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pool {
    /// Ruby threads serving the application.
    pub threads: u64,
    /// Of them, those running application code now.
    pub busy: u64,
    /// Tasks waiting for a thread.
    pub queued: u64,
    /// Channels (and patterns) this process subscribes to.
    pub channels: u64,
}

impl Pool {
    /// The sum of several processes' pools (channels: the most any one has, as the
    /// processes of a cluster mostly subscribe to the same ones).
    pub fn sum<'a>(pools: impl IntoIterator<Item = &'a Pool>) -> Pool {
        pools.into_iter().fold(Pool::default(), |t, p| Pool {
            threads: t.threads + p.threads,
            busy: t.busy + p.busy,
            queued: t.queued + p.queued,
            channels: t.channels.max(p.channels),
        })
    }
}

/// Prometheus text (exposition format 0.0.4) for `processes`: `(label, snapshot, pool)`, one
/// per process (`label` None for a lone process; a cluster's workers are labelled, and their
/// sum is given without a label).
pub fn prometheus(processes: &[Process]) -> String {
    let mut out = String::with_capacity(2048);
    let labelled = processes.iter().any(|(label, ..)| label.is_some());
    let total = Snapshot::sum(processes.iter().map(|(_, s, _)| s));
    let pool_total = Pool::sum(processes.iter().map(|(_, _, p)| p));
    let mut rows: Vec<(Option<&str>, &Snapshot, Pool)> = Vec::new();
    if labelled {
        rows.push((None, &total, pool_total));
    }
    for (label, s, p) in processes {
        rows.push((label.as_deref(), s, *p));
    }
    let labels = |worker: Option<&str>, extra: &str| -> String {
        let mut parts: Vec<String> = Vec::new();
        if let Some(w) = worker {
            parts.push(format!("worker=\"{w}\""));
        }
        if !extra.is_empty() {
            parts.push(extra.to_string());
        }
        match parts.is_empty() {
            true => String::new(),
            false => format!("{{{}}}", parts.join(",")),
        }
    };
    let mut metric = |name: &str, kind: &str, help: &str, values: &mut dyn FnMut(&mut String)| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        values(&mut out);
    };
    metric(
        "iodine_connections",
        "gauge",
        "Connections open, by kind.",
        &mut |out| {
            for (worker, s, _) in &rows {
                for kind in KINDS {
                    let l = labels(*worker, &format!("kind=\"{}\"", kind.name()));
                    let _ = writeln!(out, "iodine_connections{l} {}", s.open[kind.index()]);
                }
            }
        },
    );
    metric(
        "iodine_requests_total",
        "counter",
        "HTTP requests answered, by status class.",
        &mut |out| {
            for (worker, s, _) in &rows {
                for (i, n) in s.requests.iter().enumerate() {
                    let l = labels(*worker, &format!("status=\"{}xx\"", i + 1));
                    let _ = writeln!(out, "iodine_requests_total{l} {n}");
                }
            }
        },
    );
    let simple: [Simple; 9] = [
        (
            "iodine_bytes_in_total",
            "counter",
            "Bytes read from peers.",
            |s, _| s.bytes_in,
        ),
        (
            "iodine_bytes_out_total",
            "counter",
            "Bytes written to peers.",
            |s, _| s.bytes_out,
        ),
        (
            "iodine_pubsub_published_total",
            "counter",
            "Messages published.",
            |s, _| s.published,
        ),
        (
            "iodine_pubsub_delivered_total",
            "counter",
            "Deliveries to subscribers.",
            |s, _| s.delivered,
        ),
        (
            "iodine_pubsub_dropped_total",
            "counter",
            "Messages a full connection backlog refused.",
            |s, _| s.dropped,
        ),
        (
            "iodine_pool_threads",
            "gauge",
            "Ruby threads serving the application.",
            |_, p| p.threads,
        ),
        (
            "iodine_pool_busy",
            "gauge",
            "Ruby threads running application code.",
            |_, p| p.busy,
        ),
        (
            "iodine_pool_queued",
            "gauge",
            "Tasks waiting for a Ruby thread.",
            |_, p| p.queued,
        ),
        (
            "iodine_pubsub_channels",
            "gauge",
            "Channels and patterns subscribed to.",
            |_, p| p.channels,
        ),
    ];
    for (name, kind, help, value) in simple {
        metric(name, kind, help, &mut |out| {
            for (worker, s, p) in &rows {
                let _ = writeln!(out, "{name}{} {}", labels(*worker, ""), value(s, p));
            }
        });
    }
    out
}

/// A cluster's board: one slot per worker in a file the master makes before it forks
/// (unlinked, so it goes with the last process), where each worker writes its figures twice
/// a second (and whenever it is asked for them). Any process of the cluster reads every
/// slot: a worker's figures are at most half a second old.
pub mod board {
    use std::fs::File;
    use std::os::unix::fs::FileExt;
    use std::sync::OnceLock;
    use std::time::Duration;

    use super::{snapshot, Pool, Snapshot};

    /// 8-byte numbers per slot: the pid, then the snapshot's and the pool's figures.
    const WORDS: usize = 24;
    const SLOT: u64 = (WORDS * 8) as u64;
    /// How often a worker writes its slot.
    const EVERY: Duration = Duration::from_millis(500);

    struct Board {
        file: File,
        slots: usize,
    }

    static BOARD: OnceLock<Board> = OnceLock::new();
    /// This worker's slot and where it gets its pool figures.
    static MINE: OnceLock<(usize, fn() -> Pool)> = OnceLock::new();

    /// Makes the board for `workers` slots (the master, before the first fork).
    pub fn create(workers: usize) -> std::io::Result<()> {
        if BOARD.get().is_some() {
            return Ok(());
        }
        let file = tempfile::tempfile()?;
        file.set_len(SLOT * workers as u64)?;
        let _ = BOARD.set(Board {
            file,
            slots: workers,
        });
        Ok(())
    }

    /// Whether this process belongs to a cluster with a board.
    pub fn exists() -> bool {
        BOARD.get().is_some()
    }

    /// In the worker of `slot`: writes its figures now and every half second (a thread of
    /// its own); `pool` gives the worker pool's.
    pub fn join(slot: usize, pool: fn() -> Pool) {
        let Some(board) = BOARD.get() else { return };
        if slot >= board.slots || MINE.set((slot, pool)).is_err() {
            return;
        }
        publish();
        let spawned = std::thread::Builder::new()
            .name("iodine-stats".into())
            .spawn(|| loop {
                std::thread::sleep(EVERY);
                publish();
            });
        if let Err(e) = spawned {
            crate::warning!("couldn't start the stats writer: {e}");
        }
    }

    /// Writes this worker's figures to its slot.
    pub fn publish() {
        let (Some(board), Some((slot, pool))) = (BOARD.get(), MINE.get()) else {
            return;
        };
        let (s, p) = (snapshot(), pool());
        let mut words = [0u64; WORDS];
        words[0] = u64::from(std::process::id());
        for i in 0..5 {
            words[1 + i] = s.open[i].max(0) as u64;
            words[6 + i] = s.requests[i];
        }
        let rest = [
            s.bytes_in,
            s.bytes_out,
            s.published,
            s.delivered,
            s.dropped,
            p.threads,
            p.busy,
            p.queued,
            p.channels,
        ];
        words[11..11 + rest.len()].copy_from_slice(&rest);
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let _ = board.file.write_all_at(&bytes, SLOT * *slot as u64);
    }

    /// Every worker's figures: (slot, pid, counters, pool), for the slots written so far.
    pub fn read() -> Vec<(usize, u32, Snapshot, Pool)> {
        let Some(board) = BOARD.get() else {
            return Vec::new();
        };
        publish(); // this worker's own, fresh
        let mut all = vec![0u8; SLOT as usize * board.slots];
        if board.file.read_exact_at(&mut all, 0).is_err() {
            return Vec::new();
        }
        all.chunks_exact(SLOT as usize)
            .enumerate()
            .filter_map(|(slot, raw)| {
                let w: Vec<u64> = raw
                    .chunks_exact(8)
                    .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                    .collect();
                let pid = u32::try_from(w[0]).ok().filter(|pid| *pid != 0)?;
                let snapshot = Snapshot {
                    open: std::array::from_fn(|i| w[1 + i] as i64),
                    requests: std::array::from_fn(|i| w[6 + i]),
                    bytes_in: w[11],
                    bytes_out: w[12],
                    published: w[13],
                    delivered: w[14],
                    dropped: w[15],
                };
                let pool = Pool {
                    threads: w[16],
                    busy: w[17],
                    queued: w[18],
                    channels: w[19],
                };
                Some((slot, pid, snapshot, pool))
            })
            .collect()
    }
}

/// Where the metrics page gets its figures: every process's (label, counters, pool), set by
/// whoever runs the server (the Ruby binding adds its worker pool and a cluster's workers).
static SOURCE: std::sync::OnceLock<fn() -> Vec<Process>> = std::sync::OnceLock::new();

/// Sets where [`page`] gets its figures (once; later calls are ignored).
pub fn set_source(source: fn() -> Vec<Process>) {
    let _ = SOURCE.set(source);
}

/// The metrics page: Prometheus text of [`set_source`]'s figures (this process's counters
/// alone when none was set).
pub fn page() -> String {
    let processes = match SOURCE.get() {
        Some(source) => source(),
        None => vec![(None, snapshot(), Pool::default())],
    };
    prometheus(&processes)
}

/// Marks the metrics page's response: it is not counted as a request.
#[derive(Clone, Copy, Debug)]
pub struct NotCounted;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_renders() {
        let before = snapshot();
        {
            let _a = Open::new(Kind::Sse);
            answered(204);
            answered(503);
            answered(42); // nonsense counts as 1xx
            read(10);
            written(0);
            published();
            delivered(3);
            let now = snapshot();
            assert_eq!(now.open[2], before.open[2] + 1);
            assert!(now.requests[1] > before.requests[1]);
            assert!(now.requests[4] > before.requests[4]);
            assert!(now.bytes_in >= before.bytes_in + 10);
            assert!(now.delivered >= before.delivered + 3);
        }
        assert!(snapshot().open[2] >= 0);
        let pool = Pool {
            threads: 4,
            busy: 1,
            queued: 0,
            channels: 2,
        };
        let lone = prometheus(&[(None, snapshot(), pool)]);
        assert!(lone.contains("# TYPE iodine_connections gauge\n"), "{lone}");
        assert!(
            lone.contains("iodine_connections{kind=\"websocket\"} "),
            "{lone}"
        );
        assert!(lone.contains("iodine_pool_threads 4\n"), "{lone}");
        let mut a = Snapshot::default();
        a.requests[1] = 5;
        let mut b = Snapshot::default();
        b.requests[1] = 7;
        let cluster = prometheus(&[(Some("1".into()), a, pool), (Some("2".into()), b, pool)]);
        assert!(
            cluster.contains("iodine_requests_total{status=\"2xx\"} 12\n"),
            "{cluster}"
        );
        assert!(
            cluster.contains("iodine_requests_total{worker=\"2\",status=\"2xx\"} 7\n"),
            "{cluster}"
        );
        assert!(cluster.contains("iodine_pool_threads 8\n"), "{cluster}");
    }
}
