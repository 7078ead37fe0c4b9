//! `wsload`: the WebSocket, SSE and raw TCP load generator behind `bench/ws.rb` and `bench/raw.rb`.
//!
//! One mode per run, all on one thread (the benchmark pins the tool to one core). Each mode
//! prints one JSON line on stdout; errors are counted, and explained on stderr.
//!
//! Modules: `args` reads the options and `target` the URLs; `setup` opens many connections at
//! a bounded pace; `ws` is the WebSocket client; `stats` counts and times; the modes are
//! `echo`, `fanout` (with `publisher`, and `sse` + `event_stream` for SSE subscribers),
//! `idle`, `cable` (Action Cable clients and broadcasts), and `raw` (plain TCP echo, no
//! WebSocket); `report` writes the result line. In the
//! fan-out modes `stamp` puts the publish time and a sequence number in each message,
//! `receiver` checks and times them per subscriber, and `latency` keeps the histogram;
//! `redis` waits for the servers' subscriptions in a shared Redis and publishes to it.
#![deny(unsafe_code)]

mod args;
mod cable;
mod echo;
mod event_stream;
mod fanout;
mod idle;
mod latency;
mod publisher;
mod raw;
mod receiver;
mod redis;
mod report;
mod setup;
mod sse;
mod stamp;
mod stats;
mod target;
mod ws;

use std::process::ExitCode;

use crate::args::Args;
use crate::fanout::Mode;

/// The help text.
const USAGE: &str = "\
usage: wsload MODE --option value ...

  echo   --url ws://HOST:PORT/echo [--clients 100] [--size 32] [--window 1]
         [--seconds 5] [--warmup 1]
         each client keeps WINDOW text messages of SIZE bytes in flight
         -> {\"mode\":\"echo\",\"msgs_per_sec\":N,...}
  fanout --url ws://HOST:PORT/sub --publish ws://HOST:PORT/pub [--subscribers 100]
         [--size 32] [--ahead 64] [--seconds 5] [--warmup 1] [--parallel 200]
         subscribers (PARALLEL connecting at a time) wait for \"ready\"; the publisher
         stays at most AHEAD messages past the average subscriber; each message (at
         least 32 bytes) starts with its publish time and sequence number. The warm-up
         starts once the first AHEAD messages were delivered (at most 30 s). Prints
         {\"mode\":\"fanout\",\"subscribed\":N,...} once all are connected, then
         {\"mode\":\"fanout\",\"delivered_per_sec\":N,\"p50_us\":T,\"p99_us\":T,...}
         (latencies of the deliveries in the measured window; starved: subscribers
         that got none in it; lost: gaps in the sequence numbers)
         --url takes several URLs, comma-separated: SUBSCRIBERS on each server.
         --publish redis://HOST:PORT/CHANNEL publishes straight to Redis (PUBLISH);
         --redis redis://HOST:PORT/CHANNEL (implied by it) first waits until each
         server has subscribed CHANNEL there (PUBSUB NUMSUB >= the number of URLs).
         --drain SECONDS: after the window the publisher stops, and within SECONDS
         every subscriber must have every message of the run: adds published,
         received, missing, duplicated (over the whole run) and drain_ms.
         {\"window\":\"start\"} and {\"window\":\"end\"} lines mark the window.
  sse    --url http://HOST:PORT/sse --publish ws://HOST:PORT/pub [options of fanout]
         the same with SSE subscribers (raw HTTP/1.1, Accept: text/event-stream)
  idle   --url ws://HOST:PORT/echo [--count 10000] [--hold 5] [--parallel 200]
         opens COUNT connections, checks each with one echo, prints
         {\"mode\":\"idle\",\"open\":N,\"failed\":M}, holds them HOLD seconds
  cable  --url ws://HOST:PORT/cable --trigger http://HOST:PORT/announce [--clients 1000]
         [--channel ChatChannel] [--rounds 5] [--pause 1] [--parallel 100]
         Action Cable clients subscribed to one channel; each round POSTs the trigger
         (text=rN) and times until every client received the broadcast
         -> {\"mode\":\"cable\",\"subscribed\":N,...}, one line per round, the median
  raw    --url tcp://HOST:PORT [--clients 100] [--size 64] [--window 1]
         [--seconds 5] [--warmup 1]
         plain TCP echo: each client keeps WINDOW messages of SIZE bytes in flight; a
         message counts once SIZE bytes of it came back (any chunking), every byte checked
         -> {\"mode\":\"raw\",\"msgs_per_sec\":N,...}
";

/// Runs the mode named by the first argument; exit status 1 (and a reason on stderr) on failure.
fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1);
    let mode = argv.next().unwrap_or_default();
    if matches!(mode.as_str(), "" | "-h" | "--help" | "help") {
        print!("{USAGE}");
        return if mode.is_empty() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    match Args::parse(argv).and_then(|args| run(&mode, &args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsload {mode}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `mode` on a single-threaded runtime; dropping the runtime ends every task left.
fn run(mode: &str, args: &Args) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        match mode {
            "echo" => echo::run(args).await,
            "fanout" => fanout::run(args, Mode::WebSocket).await,
            "sse" => fanout::run(args, Mode::Sse).await,
            "idle" => idle::run(args).await,
            "raw" => raw::run(args).await,
            "cable" => cable::run(args).await,
            _ => Err(format!("unknown mode\n{USAGE}")),
        }
    })
}
