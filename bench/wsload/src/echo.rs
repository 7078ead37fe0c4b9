//! `echo`: clients that each keep `window` messages in flight and count the echoes.

use std::sync::Arc;

use futures_util::SinkExt;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::args::Args;
use crate::report::Report;
use crate::setup::open_all;
use crate::stats::Stats;
use crate::target::Target;
use crate::ws::{self, Ws};

/// Connections opened at once while setting up.
const PARALLEL: usize = 200;

/// Runs the echo mode and prints `{"mode":"echo","msgs_per_sec":…}`.
pub async fn run(args: &Args) -> Result<(), String> {
    args.only(&["url", "clients", "size", "seconds", "warmup", "window"])?;
    let target = Target::parse(args.required("url")?, "ws")?;
    let clients = args.get("clients", 100_usize)?;
    let size = args.get("size", 32_usize)?;
    let window = args.get("window", 1_usize)?.max(1);
    let (warmup, seconds) = (args.seconds("warmup", 1.0)?, args.seconds("seconds", 5.0)?);

    let stats = Arc::new(Stats::default());
    let read_buffer = ws::read_buffer(size, window);
    let conns = open_all(clients, PARALLEL, &stats, |_| {
        ws::connect(&target, read_buffer)
    })
    .await;
    if conns.is_empty() {
        return Err(stats.nothing_opened("clients"));
    }
    let payload = ws::text(size);
    let mut tasks = JoinSet::new();
    for conn in conns {
        tasks.spawn(client(conn, payload.clone(), window, stats.clone()));
    }
    // The window's edges are printed, so the caller can read the server's CPU time there.
    let counted = stats
        .measure_marked(warmup, seconds, |mark| {
            println!("{}", Report::new("echo").text("window", mark));
        })
        .await;
    tasks.abort_all();

    stats.log_errors();
    let report = Report::new("echo")
        .rate("msgs_per_sec", counted.per_sec(counted.delivered))
        .int("clients", clients as u64)
        .int("size", size as u64)
        .int("window", window as u64)
        .int("errors", stats.errors());
    println!("{report}");
    Ok(())
}

/// One client: sends `window` messages, then one more for every echo, until aborted.
async fn client(mut conn: Ws, payload: Message, window: usize, stats: Arc<Stats>) {
    if let Err(e) = echo(&mut conn, &payload, window, &stats).await {
        stats.error(format!("echo client: {e}"));
    }
}

/// The client's loop; only returns on an error.
async fn echo(
    conn: &mut Ws,
    payload: &Message,
    window: usize,
    stats: &Stats,
) -> Result<(), String> {
    let mut due = window as u64;
    loop {
        // Queue every due message, then write them with one flush.
        for _ in 0..due {
            conn.feed(payload.clone())
                .await
                .map_err(|e| e.to_string())?;
        }
        conn.flush().await.map_err(|e| e.to_string())?;
        ws::next_data(conn).await?;
        due = 1 + ws::drain_ready(conn, |_| {})?;
        stats.deliver(due);
    }
}
