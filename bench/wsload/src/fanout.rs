//! `fanout` and `sse`: N subscribers (WebSocket or SSE) on each of one or more servers, one
//! publisher (through a server, or straight to the Redis the servers share), deliveries counted
//! and timed (each message carries its publish time: `stamp`), gaps and starved subscribers
//! spotted; with `--drain`, every message of the run is accounted for (missing, duplicated).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::task::JoinSet;

use crate::args::Args;
use crate::publisher::{self, Sink};
use crate::receiver::Receiver;
use crate::redis;
use crate::report::Report;
use crate::setup::{open_all, within, SETUP_TIMEOUT};
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
/// publisher are connected, `{"mode":…,"window":"start"}` and `…"end"` around the measured
/// window, then `{"mode":…,"delivered_per_sec":…,"p50_us":…,"p99_us":…}`.
pub async fn run(args: &Args, mode: Mode) -> Result<(), String> {
    args.only(&[
        "url",
        "subscribers",
        "publish",
        "redis",
        "seconds",
        "warmup",
        "drain",
        "size",
        "ahead",
        "parallel",
    ])?;
    let (name, scheme) = match mode {
        Mode::WebSocket => ("fanout", "ws"),
        Mode::Sse => ("sse", "http"),
    };
    // One or more servers (comma-separated URLs), each gets SUBSCRIBERS.
    let targets = args
        .required("url")?
        .split(',')
        .map(|url| Target::parse(url, scheme))
        .collect::<Result<Vec<_>, _>>()?;
    let publish = args.required("publish")?;
    // The Redis the servers share: before publishing, each server must have subscribed.
    let redis = match (args.value("redis"), publish.starts_with("redis://")) {
        (Some(url), _) => Some(redis::Channel::parse(url)?),
        (None, true) => Some(redis::Channel::parse(publish)?),
        (None, false) => None,
    };
    let per_url = args.get("subscribers", 100_usize)?;
    let subscribers = per_url * targets.len();
    let size = args.get("size", 32_usize)?.max(stamp::MIN_SIZE);
    let ahead = args.get("ahead", 64_u64)?.max(1);
    let parallel = args.get("parallel", 200_usize)?;
    let (warmup, seconds) = (args.seconds("warmup", 1.0)?, args.seconds("seconds", 5.0)?);
    let drain = args.seconds("drain", 0.0)?;

    // Every subscriber is open and confirmed ("ready") before the first message is published.
    stamp::now_ns(); // starts the clock
    let stats = Arc::new(Stats::default());
    let mut tasks = JoinSet::new();
    let mut counts = Vec::with_capacity(subscribers);
    let read_buffer = ws::read_buffer(size, ahead as usize);
    let target = |i: usize| &targets[i % targets.len()];
    match mode {
        Mode::WebSocket => {
            for conn in open_all(subscribers, parallel, &stats, |i| {
                subscribe(target(i), read_buffer)
            })
            .await
            {
                let (receiver, count) = Receiver::new(stats.clone());
                counts.push(count);
                tasks.spawn(listen(conn, receiver, stats.clone()));
            }
        }
        Mode::Sse => {
            for conn in open_all(subscribers, parallel, &stats, |i| sse::subscribe(target(i))).await
            {
                let (receiver, count) = Receiver::new(stats.clone());
                counts.push(count);
                tasks.spawn(sse::listen(conn, receiver, stats.clone()));
            }
        }
    }
    let listening = tasks.len() as u64;
    if listening == 0 {
        return Err(stats.nothing_opened("subscribers"));
    }
    if let Some(channel) = &redis {
        redis::await_subscribers(channel, targets.len() as u64, SETUP_TIMEOUT).await?;
    }
    let sink = if publish.starts_with("redis://") {
        let channel = redis::Channel::parse(publish)?;
        Sink::Redis(redis::Publisher::connect(&channel, stats.clone()).await?)
    } else {
        Sink::Ws(Box::new(
            ws::connect(&Target::parse(publish, "ws")?, 4096).await?,
        ))
    };
    let replies = match &sink {
        Sink::Redis(publisher) => Some(publisher.replies.clone()),
        Sink::Ws(_) => None,
    };
    println!(
        "{}",
        Report::new(name)
            .int("subscribed", listening)
            .int("failed", stats.errors())
    );
    let publisher = tokio::spawn(publisher::run(sink, size, ahead, listening, stats.clone()));
    // The warm-up starts once the queue has turned over: a slow server may take seconds to
    // deliver the first AHEAD messages to thousands of subscribers.
    let primed = prime(&stats, ahead * listening).await;
    if primed.is_none() {
        eprintln!(
            "wsload: the first {ahead} messages were not delivered within {} s; measuring anyway",
            PRIME_LIMIT.as_secs()
        );
    }
    let counted = stats
        .measure_marked(warmup, seconds, |mark| {
            println!("{}", Report::new(name).text("window", mark));
        })
        .await;

    // The whole run: the publisher stops, and every subscriber must get every message once.
    let drained = if drain > 0.0 {
        let deadline = Instant::now() + Duration::from_secs_f64(drain);
        stats.stop();
        let _sink = tokio::time::timeout_at(deadline.into(), publisher).await;
        let published = stats.published();
        if let Some(replies) = &replies {
            while replies.read.load(Relaxed) < published && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let start = Instant::now();
        while counts.iter().any(|c| c.distinct() < published) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let took = start.elapsed();
        // A late copy of a message would come right behind it.
        tokio::time::sleep(DUPLICATE_GRACE).await;
        Some((published, took))
    } else {
        publisher.abort();
        None
    };
    tasks.abort_all();

    stats.log_errors();
    let starved = counts.iter().filter(|c| c.in_window() == 0).count() as u64;
    let per_subscriber = counts.iter().map(|c| c.in_window());
    let least = per_subscriber.clone().min().unwrap_or(0);
    let most = per_subscriber.max().unwrap_or(0);
    let micros = |ns: u64| ns as f64 / 1000.0;
    let mut report = Report::new(name)
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
    if let Some((published, took)) = drained {
        // Over the whole run: every subscriber should have every message published, once.
        let missing: u64 = counts
            .iter()
            .map(|c| published.saturating_sub(c.distinct()))
            .sum();
        let duplicated: u64 = counts.iter().map(|c| c.duplicated()).sum();
        let received: u64 = counts.iter().map(|c| c.distinct() + c.duplicated()).sum();
        report = report
            .int("published", published)
            .int("received", received)
            .int("missing", missing)
            .int("duplicated", duplicated)
            .rate("drain_ms", took.as_secs_f64() * 1000.0);
    }
    if let Some(replies) = replies {
        let least = match replies.least.load(Relaxed) {
            u64::MAX => 0, // no reply
            least => least,
        };
        report = report
            .int("redis_replies", replies.read.load(Relaxed))
            .int("redis_receivers_least", least);
    }
    println!("{report}");
    Ok(())
}

/// How long the drain waits after the last message arrived, for copies of it.
const DUPLICATE_GRACE: Duration = Duration::from_millis(200);

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
