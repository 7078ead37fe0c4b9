//! `fanout` and `sse`: N subscribers (WebSocket or SSE), one publisher, deliveries counted.

use std::sync::Arc;

use futures_util::StreamExt;
use tokio::task::JoinSet;

use crate::args::Args;
use crate::publisher;
use crate::report::Report;
use crate::setup::{open_all, within};
use crate::sse;
use crate::stats::Stats;
use crate::target::Target;
use crate::ws::{self, Ws};

/// Connections opened at once while setting up.
const PARALLEL: usize = 200;

/// How the subscribers listen.
#[derive(Clone, Copy)]
pub enum Mode {
    /// WebSocket connections to a `ws://` URL (`fanout`).
    WebSocket,
    /// Server-sent events from an `http://` URL (`sse`).
    Sse,
}

/// Runs a fan-out mode and prints `{"mode":…,"delivered_per_sec":…}`.
pub async fn run(args: &Args, mode: Mode) -> Result<(), String> {
    args.only(&[
        "url",
        "subscribers",
        "publish",
        "seconds",
        "warmup",
        "size",
        "ahead",
    ])?;
    let (name, scheme) = match mode {
        Mode::WebSocket => ("fanout", "ws"),
        Mode::Sse => ("sse", "http"),
    };
    let target = Target::parse(args.required("url")?, scheme)?;
    let publish = Target::parse(args.required("publish")?, "ws")?;
    let subscribers = args.get("subscribers", 100_usize)?;
    let size = args.get("size", 32_usize)?;
    let ahead = args.get("ahead", 64_u64)?.max(1);
    let (warmup, seconds) = (args.seconds("warmup", 1.0)?, args.seconds("seconds", 5.0)?);

    // Every subscriber is open and confirmed ("ready") before the first message is published.
    let stats = Arc::new(Stats::default());
    let mut tasks = JoinSet::new();
    let read_buffer = ws::read_buffer(size, ahead as usize);
    match mode {
        Mode::WebSocket => {
            for conn in open_all(subscribers, PARALLEL, &stats, |_| {
                subscribe(&target, read_buffer)
            })
            .await
            {
                tasks.spawn(listen(conn, stats.clone()));
            }
        }
        Mode::Sse => {
            for conn in open_all(subscribers, PARALLEL, &stats, |_| sse::subscribe(&target)).await {
                tasks.spawn(sse::listen(conn, stats.clone()));
            }
        }
    }
    let listening = tasks.len() as u64;
    if listening == 0 {
        return Err(stats.nothing_opened("subscribers"));
    }
    let publisher = ws::connect(&publish, 4096).await?;
    tasks.spawn(publisher::run(
        publisher,
        ws::text(size),
        ahead,
        listening,
        stats.clone(),
    ));
    let counted = stats.measure(warmup, seconds).await;
    tasks.abort_all();

    stats.log_errors();
    let report = Report::new(name)
        .rate("delivered_per_sec", counted.per_sec(counted.delivered))
        .rate("published_per_sec", counted.per_sec(counted.published))
        .int("subscribers", listening)
        .int("size", size as u64)
        .int("ahead", ahead)
        .int("errors", stats.errors());
    println!("{report}");
    Ok(())
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

/// Counts a WebSocket subscriber's messages until aborted.
async fn listen(mut conn: Ws, stats: Arc<Stats>) {
    let result: Result<(), String> = async {
        loop {
            let first = u64::from(ws::data(conn.next().await)?.is_some());
            let count = first + ws::drain_ready(&mut conn)?;
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
