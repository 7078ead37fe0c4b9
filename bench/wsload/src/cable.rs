//! `cable`: Action Cable clients (the `actioncable-v1-json` protocol Rails' JavaScript client
//! speaks) subscribed to one channel, and broadcasts to all of them timed from the HTTP request
//! that makes each one.
//!
//! Each client connects to `--url` with `?name=cN` (the app identifies connections by it),
//! waits for the welcome, subscribes to `--channel` and waits for the confirmation. Once all
//! are subscribed a line `{"mode":"cable","subscribed":N,"failed":M}` is printed and the tool
//! waits `--pause` seconds (the driver reads the server's memory then). Each round POSTs
//! `--trigger` with `text=rR` added to its query; the app broadcasts that text to the channel,
//! and the round lasts until every client has received it. A line per round says how long
//! (`ms`) and how many got it; the last line has the median.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

use crate::args::Args;
use crate::idle::raise_open_files_limit;
use crate::report::Report;
use crate::setup::{open_all, within};
use crate::stats::Stats;
use crate::target::Target;
use crate::ws::{self, Ws};

/// The subprotocol Rails' client offers (and the only one the server speaks).
const PROTOCOL: &str = "actioncable-v1-json";

/// Per-connection read buffer: broadcasts are small.
const READ_BUFFER: usize = 1024;

/// How long one round may take before the clients that did not hear it are counted as misses.
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the mode (see the module's documentation).
pub async fn run(args: &Args) -> Result<(), String> {
    args.only(&[
        "url", "clients", "channel", "trigger", "rounds", "pause", "parallel",
    ])?;
    let target = Target::parse(args.required("url")?, "ws")?;
    let trigger = Target::parse(args.required("trigger")?, "http")?;
    let clients = args.get("clients", 1000_usize)?;
    let channel = args.get("channel", "ChatChannel".to_owned())?;
    let rounds = args.get("rounds", 5_usize)?;
    let pause = args.seconds("pause", 1.0)?;
    let parallel = args.get("parallel", 100_usize)?;
    if let Err(e) = raise_open_files_limit() {
        eprintln!("wsload: could not raise the open-files limit: {e}");
    }
    let identifier = format!("{{\"channel\":\"{channel}\"}}");

    let stats = Stats::default();
    let conns = open_all(clients, parallel, &stats, |i| {
        subscribed(&target, &identifier, i)
    })
    .await;
    stats.log_errors();
    println!(
        "{}",
        Report::new("cable")
            .int("subscribed", conns.len() as u64)
            .int("failed", stats.errors())
    );
    tokio::time::sleep(Duration::from_secs_f64(pause)).await;

    // Every client's reader counts the round's text; the last one to hear it wakes the round.
    let round = Arc::new(Round::default());
    let expected = conns.len() as u64;
    let readers: Vec<_> = conns
        .into_iter()
        .map(|conn| tokio::spawn(listen(conn, round.clone(), expected)))
        .collect();
    let mut times = Vec::with_capacity(rounds);
    for r in 0..rounds {
        round.start(r as u64);
        let started = Instant::now();
        let heard = round.all_heard.notified();
        post(&trigger, &format!("r{r}")).await?;
        let finished = tokio::time::timeout(ROUND_TIMEOUT, heard).await.is_ok();
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let received = round.heard.load(Ordering::Acquire);
        println!(
            "{}",
            Report::new("cable")
                .int("round", r as u64)
                .rate("ms", ms)
                .int("received", received)
                .int("missed", expected - received.min(expected))
        );
        if finished {
            times.push(ms);
        }
        // A moment between rounds, so late pings or writes of one round don't weigh on the next.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for reader in readers {
        reader.abort();
    }
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(0.0);
    println!(
        "{}",
        Report::new("cable")
            .int("clients", expected)
            .int("rounds_complete", times.len() as u64)
            .rate("median_ms", median)
            .rate("deliveries_per_sec", expected as f64 / (median / 1000.0))
    );
    Ok(())
}

/// The round in progress: its number and how many clients heard it.
#[derive(Default)]
struct Round {
    number: AtomicU64,
    heard: AtomicU64,
    all_heard: Notify,
}

impl Round {
    fn start(&self, number: u64) {
        self.heard.store(0, Ordering::Release);
        self.number.store(number, Ordering::Release);
    }
}

/// Reads one client's messages until aborted, counting those of the current round.
async fn listen(mut conn: Ws, round: Arc<Round>, expected: u64) {
    loop {
        let Ok(message) = ws::next_data(&mut conn).await else {
            return;
        };
        if let Some(number) = round_of(ws::payload(&message)) {
            if number == round.number.load(Ordering::Acquire)
                && round.heard.fetch_add(1, Ordering::AcqRel) + 1 == expected
            {
                round.all_heard.notify_one();
            }
        }
    }
}

/// The round number of a broadcast (`"text":"rN"` in its message), None for anything else.
fn round_of(payload: &[u8]) -> Option<u64> {
    const MARK: &[u8] = b"\"text\":\"r";
    let at = memchr::memmem::find(payload, MARK)? + MARK.len();
    let digits = &payload[at..];
    let end = digits.iter().position(|b| !b.is_ascii_digit())?;
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

/// Opens client `i` and subscribes it: the welcome, the subscribe command, the confirmation.
async fn subscribed(target: &Target, identifier: &str, i: usize) -> Result<Ws, String> {
    let separator = if target.url.contains('?') { '&' } else { '?' };
    let url = format!("{}{separator}name=c{i}", target.url);
    let mut conn = ws::connect_as(target, &url, Some(PROTOCOL), READ_BUFFER).await?;
    within(&url, async {
        expect(&mut conn, "\"type\":\"welcome\"").await?;
        let subscribe = format!(
            "{{\"command\":\"subscribe\",\"identifier\":{}}}",
            json_string(identifier)
        );
        conn.send(Message::text(subscribe))
            .await
            .map_err(|e| e.to_string())?;
        expect(&mut conn, "\"type\":\"confirm_subscription\"").await?;
        Ok(conn)
    })
    .await
}

/// Reads messages until one contains `mark` (pings and others before it are skipped).
async fn expect(conn: &mut Ws, mark: &str) -> Result<(), String> {
    loop {
        let message = ws::next_data(conn).await?;
        let payload = ws::payload(&message);
        if memchr::memmem::find(payload, mark.as_bytes()).is_some() {
            return Ok(());
        }
        if memchr::memmem::find(payload, b"\"type\":\"disconnect\"").is_some() {
            return Err(format!("refused: {}", String::from_utf8_lossy(payload)));
        }
    }
}

/// `text` as a JSON string (it holds no control characters).
fn json_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// POSTs `trigger` with `text` added to its query and reads the whole answer, which must be
/// a 2xx.
async fn post(trigger: &Target, text: &str) -> Result<(), String> {
    let separator = if trigger.path.contains('?') { '&' } else { '?' };
    let request = format!(
        "POST {}{separator}text={text} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        trigger.path, trigger.addr
    );
    within(&trigger.url, async {
        let mut tcp = TcpStream::connect(&trigger.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", trigger.addr))?;
        tcp.write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        if answer.starts_with(b"HTTP/1.1 2") || answer.starts_with(b"HTTP/1.0 2") {
            Ok(())
        } else {
            let head = String::from_utf8_lossy(&answer[..answer.len().min(200)]).into_owned();
            Err(format!("the trigger answered {head:?}"))
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_round_of_a_broadcast() {
        let broadcast = br#"{"identifier":"{\"channel\":\"ChatChannel\"}","message":{"text":"r12","from":"server"}}"#;
        assert_eq!(round_of(broadcast), Some(12));
        assert_eq!(round_of(br#"{"type":"ping","message":1700000000}"#), None);
        assert_eq!(round_of(br#"{"message":{"text":"r"#), None);
    }

    #[test]
    fn quotes_the_identifier() {
        assert_eq!(
            json_string(r#"{"channel":"ChatChannel"}"#),
            r#""{\"channel\":\"ChatChannel\"}""#
        );
    }
}
