//! `fanout` and `sse`: N subscribers (WebSocket or SSE), one publisher, deliveries counted and
//! timed (each message carries its publish time: `stamp`), gaps and starved subscribers spotted.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::task::JoinSet;

use crate::args::Args;
use crate::publisher;
use crate::receiver::Receiver;
use crate::report::Report;
use crate::setup::{open_all, within};
use crate::sse;
use crate::stamp;
use crate::stats::Stats;
use crate::target::Target;
use crate::ws::{self, Ws};

/// How the subscribers listen.
#[derive(Clone, Copy)]
pub enum Mode {
    /// WebSocket connections to a `ws://` URL (`fanout`).
    WebSocket,
    /// Server-sent events from an `http://` URL (`sse`).
    Sse,
}

/// Runs a fan-out mode: prints `{"mode":…,"subscribed":N}` once every subscriber and the
/// publisher are connected, then `{"mode":…,"delivered_per_sec":…,"p50_us":…,"p99_us":…}`.
pub async fn run(args: &Args, mode: Mode) -> Result<(), String> {
    args.only(&[
        "url",
        "subscribers",
        "publish",
        "seconds",
        "warmup",
        "size",
        "ahead",
        "parallel",
    ])?;
    let (name, scheme) = match mode {
        Mode::WebSocket => ("fanout", "ws"),
        Mode::Sse => ("sse", "http"),
    };
    let target = Target::parse(args.required("url")?, scheme)?;
    let publish = Target::parse(args.required("publish")?, "ws")?;
    let subscribers = args.get("subscribers", 100_usize)?;
    let size = args.get("size", 32_usize)?.max(stamp::MIN_SIZE);
    let ahead = args.get("ahead", 64_u64)?.max(1);
    let parallel = args.get("parallel", 200_usize)?;
    let (warmup, seconds) = (args.seconds("warmup", 1.0)?, args.seconds("seconds", 5.0)?);

    // Every subscriber is open and confirmed ("ready") before the first message is published.
    stamp::now_ns(); // starts the clock
    let stats = Arc::new(Stats::default());
    let mut tasks = JoinSet::new();
    let mut counters = Vec::with_capacity(subscribers);
    let read_buffer = ws::read_buffer(size, ahead as usize);
    match mode {
        Mode::WebSocket => {
            for conn in open_all(subscribers, parallel, &stats, |_| {
                subscribe(&target, read_buffer)
            })
            .await
            {
                let (receiver, counter) = Receiver::new(stats.clone());
                counters.push(counter);
                tasks.spawn(listen(conn, receiver, stats.clone()));
            }
        }
        Mode::Sse => {
            for conn in open_all(subscribers, parallel, &stats, |_| sse::subscribe(&target)).await {
                let (receiver, counter) = Receiver::new(stats.clone());
                counters.push(counter);
                tasks.spawn(sse::listen(conn, receiver, stats.clone()));
            }
        }
    }
    let listening = tasks.len() as u64;
    if listening == 0 {
        return Err(stats.nothing_opened("subscribers"));
    }
    let publisher = ws::connect(&publish, 4096).await?;
    println!(
        "{}",
        Report::new(name)
            .int("subscribed", listening)
            .int("failed", stats.errors())
    );
    tasks.spawn(publisher::run(
        publisher,
        size,
        ahead,
        listening,
        stats.clone(),
    ));
    // The warm-up starts once the queue has turned over: a slow server may take seconds to
    // deliver the first AHEAD messages to thousands of subscribers.
    let primed = prime(&stats, ahead * listening).await;
    if primed.is_none() {
        eprintln!(
            "wsload: the first {ahead} messages were not delivered within {} s; measuring anyway",
            PRIME_LIMIT.as_secs()
        );
    }
    let counted = stats.measure(warmup, seconds).await;
    tasks.abort_all();

    stats.log_errors();
    let starved = counters.iter().filter(|c| c.load(Relaxed) == 0).count() as u64;
    let per_subscriber = counters.iter().map(|c| c.load(Relaxed));
    let least = per_subscriber.clone().min().unwrap_or(0);
    let most = per_subscriber.max().unwrap_or(0);
    let micros = |ns: u64| ns as f64 / 1000.0;
    let report = Report::new(name)
        .rate("delivered_per_sec", counted.per_sec(counted.delivered))
        .rate("published_per_sec", counted.per_sec(counted.published))
        .rate("p50_us", micros(stats.latency.quantile(0.5)))
        .rate("p99_us", micros(stats.latency.quantile(0.99)))
        .rate("max_us", micros(stats.latency.max()))
        .int("timed", stats.latency.count())
        .rate("primed_ms", primed.map_or(f64::NAN, |s| s * 1000.0))
        .int("subscribers", listening)
        .int("starved", starved)
        .int("least", least)
        .int("most", most)
        .int("lost", stats.lost.load(Relaxed))
        .int("disordered", stats.disordered.load(Relaxed))
        .int("unstamped", stats.unstamped.load(Relaxed))
        .int("size", size as u64)
        .int("ahead", ahead)
        .int("errors", stats.errors());
    println!("{report}");
    Ok(())
}

/// How long `prime` waits at most.
const PRIME_LIMIT: Duration = Duration::from_secs(30);

/// Waits until `deliveries` messages were delivered, at most `PRIME_LIMIT`; the seconds it
/// took, or `None` if that was not enough.
async fn prime(stats: &Stats, deliveries: u64) -> Option<f64> {
    let start = Instant::now();
    while stats.delivered() < deliveries {
        if start.elapsed() >= PRIME_LIMIT {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Some(start.elapsed().as_secs_f64())
}

/// Opens a WebSocket subscriber and waits for the server's `ready` message.
async fn subscribe(target: &Target, read_buffer: usize) -> Result<Ws, String> {
    let mut conn = ws::connect(target, read_buffer).await?;
    let first = within(&target.url, ws::next_data(&mut conn)).await?;
    match first.to_text() {
        Ok("ready") => Ok(conn),
        _ => Err(format!("{}: expected \"ready\", got {first:?}", target.url)),
    }
}

/// Counts and times a WebSocket subscriber's messages until aborted.
async fn listen(mut conn: Ws, mut receiver: Receiver, stats: Arc<Stats>) {
    let result: Result<(), String> = async {
        loop {
            let first = ws::data(conn.next().await)?;
            // One clock read per wake-up: what is drained below had arrived by now.
            let now = stamp::now_ns();
            let mut count = 0;
            if let Some(message) = first {
                receiver.message(ws::payload(&message), now);
                count += 1;
            }
            count += ws::drain_ready(&mut conn, |message| {
                receiver.message(ws::payload(message), now);
            })?;
            if count > 0 {
                stats.deliver(count);
            }
        }
    }
    .await;
    if let Err(e) = result {
        stats.error(format!("subscriber: {e}"));
    }
}
