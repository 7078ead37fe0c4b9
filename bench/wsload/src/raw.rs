//! `raw`: plain TCP echo clients (no framing) that each keep `window` messages in flight and
//! count the messages echoed back whole, checking every byte that comes back.
//!
//! The server may echo in any chunking, so a message is complete once `size` more bytes of it
//! came back. The bytes sent are a pattern of period `PERIOD` (prime, so it never lines up
//! with the message size), and every chunk read must match the next bytes of that pattern:
//! a server that loses, reorders or corrupts a byte is an error, not a fast run.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::args::Args;
use crate::report::Report;
use crate::setup::{open_all, within};
use crate::stats::Stats;
use crate::target::Target;

/// Connections opened at once while setting up.
const PARALLEL: usize = 200;

/// The period of the byte pattern sent (a prime).
const PERIOD: usize = 251;

/// Runs the raw mode and prints `{"mode":"raw","msgs_per_sec":…}`.
pub async fn run(args: &Args) -> Result<(), String> {
    args.only(&["url", "clients", "size", "seconds", "warmup", "window"])?;
    let target = Target::parse(args.required("url")?, "tcp")?;
    let clients = args.get("clients", 100_usize)?;
    let size = args.get("size", 64_usize)?;
    let window = args.get("window", 1_usize)?.max(1);
    let (warmup, seconds) = (args.seconds("warmup", 1.0)?, args.seconds("seconds", 5.0)?);
    if size == 0 {
        return Err("--size must be at least 1".to_owned());
    }
    if u32::try_from(window).is_err() {
        return Err(format!("--window {window} is too large"));
    }

    let stats = Arc::new(Stats::default());
    let conns = open_all(clients, PARALLEL, &stats, |_| connect(&target)).await;
    if conns.is_empty() {
        return Err(stats.nothing_opened("clients"));
    }
    let pattern = Arc::new(pattern(size * window + PERIOD));
    let mut tasks = JoinSet::new();
    for conn in conns {
        tasks.spawn(client(conn, pattern.clone(), size, window, stats.clone()));
    }
    // The window's edges are printed, so the caller can read the server's CPU time there.
    let counted = stats
        .measure_marked(warmup, seconds, |mark| {
            println!("{}", Report::new("raw").text("window", mark));
        })
        .await;
    tasks.abort_all();

    stats.log_errors();
    let report = Report::new("raw")
        .rate("msgs_per_sec", counted.per_sec(counted.delivered))
        .rate(
            "mib_per_sec",
            counted.per_sec(counted.delivered) * size as f64 / (1024.0 * 1024.0),
        )
        .int("clients", clients as u64)
        .int("size", size as u64)
        .int("window", window as u64)
        .int("errors", stats.errors());
    println!("{report}");
    Ok(())
}

/// Opens a TCP connection to `target` (Nagle off) within `SETUP_TIMEOUT`.
async fn connect(target: &Target) -> Result<TcpStream, String> {
    within(&target.url, async {
        let tcp = TcpStream::connect(&target.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", target.addr))?;
        tcp.set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        Ok(tcp)
    })
    .await
}

/// `len` bytes of the repeating pattern: byte `i` is `i % PERIOD`.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % PERIOD) as u8).collect()
}

/// One client: a writer that sends a message for every credit and a reader that checks the
/// echo and gives a credit back per complete message, until aborted.
async fn client(
    mut conn: TcpStream,
    pattern: Arc<Vec<u8>>,
    size: usize,
    window: usize,
    stats: Arc<Stats>,
) {
    // Reading and writing run side by side, so a window larger than the socket buffers
    // cannot deadlock (a writer blocked on a server that is blocked on writing to us).
    let credits = Semaphore::new(window);
    let (reader, writer) = conn.split();
    let result = tokio::try_join!(
        write(writer, &pattern, size, &credits),
        read(reader, &pattern, size, window, &credits, &stats),
    );
    if let Err(e) = result {
        stats.error(format!("raw client: {e}"));
    }
}

/// Sends one message per credit, all the credits ready at once in one write; only returns on
/// an error.
async fn write(
    mut conn: WriteHalf<'_>,
    pattern: &[u8],
    size: usize,
    credits: &Semaphore,
) -> Result<(), String> {
    let mut offset = 0; // where the next message starts in the pattern
    loop {
        credits.acquire().await.map_err(|e| e.to_string())?.forget();
        let mut due = 1;
        let more = credits.available_permits();
        if more > 0 {
            if let Ok(permits) = credits.try_acquire_many(more as u32) {
                permits.forget();
                due += more;
            }
        }
        let len = due * size;
        conn.write_all(&pattern[offset..offset + len])
            .await
            .map_err(|e| format!("write: {e}"))?;
        offset = (offset + len) % PERIOD;
    }
}

/// Reads the echo, checks it against what was sent, and counts (and credits back) each
/// complete message; only returns on an error.
async fn read(
    mut conn: ReadHalf<'_>,
    pattern: &[u8],
    size: usize,
    window: usize,
    credits: &Semaphore,
    stats: &Stats,
) -> Result<(), String> {
    let mut buffer = vec![0; (size * window).clamp(4096, 256 * 1024)];
    let mut received: u64 = 0; // bytes echoed so far
    let mut partial = 0; // bytes of the current message received
    loop {
        let n = conn
            .read(&mut buffer)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!(
                "the server closed the connection after {received} bytes"
            ));
        }
        // The pattern is longer than all the bytes in flight (at most size * window): a
        // longer read means the server sent more than it was sent.
        let start = (received % PERIOD as u64) as usize;
        let expected = pattern
            .get(start..start + n)
            .filter(|_| partial + n <= size * window)
            .ok_or_else(|| {
                format!(
                    "got {n} bytes at byte {received} with at most {} in flight",
                    size * window - partial
                )
            })?;
        if let Some(at) = buffer[..n].iter().zip(expected).position(|(a, b)| a != b) {
            return Err(format!(
                "the echo differs at byte {} (got {}, sent {})",
                received + at as u64,
                buffer[at],
                expected[at]
            ));
        }
        received += n as u64;
        partial += n;
        let complete = partial / size;
        if complete > 0 {
            partial %= size;
            stats.deliver(complete as u64);
            credits.add_permits(complete);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_repeats_with_its_period() {
        let p = pattern(2 * PERIOD + 3);
        assert_eq!(p[0], 0);
        assert_eq!(p[PERIOD - 1], (PERIOD - 1) as u8);
        assert_eq!(p[PERIOD..], p[..PERIOD + 3]);
    }
}
