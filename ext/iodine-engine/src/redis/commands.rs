//! The command connection: a fred client sends PUBLISH and the app's commands, in order,
//! pipelined. Each command waits for the fence first (the subscriber confirmed every change
//! made before the command was queued). fred reconnects on its own; it tries a command once
//! (a command in flight when the connection breaks gets an error reply, never a second
//! send: the default retries published the same message several times after a restart).
//! A PING every `ping` seconds with no answer by the next one forces a reconnection (fred's
//! own check counts from the last write, so a busy connection to a hung Redis never trips it).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fred::interfaces::{ClientLike, EventInterface};
use fred::prelude::{Builder, ReconnectPolicy};
use fred::types::{ClusterHash, CustomCommand, Resp3Frame, Value};
use futures_util::stream::{FuturesOrdered, StreamExt};
use tokio::sync::mpsc;

use super::{Reply, ReplyTo, Shared};

/// Commands sent and not answered yet, at most.
const IN_FLIGHT: usize = 1024;

/// A command waiting to be sent.
pub(super) struct Command {
    pub(super) args: Vec<Bytes>,
    /// The interest change counter when it was queued: it waits until the subscriber got there.
    pub(super) after: u64,
    /// Where the reply goes (None for a PUBLISH made through the engine).
    pub(super) reply: Option<ReplyTo>,
    /// A PUBLISH made through the engine (counted in `messages_out`).
    pub(super) publish: bool,
}

/// A command's reply, and whether it was a PUBLISH made through the engine.
type Answer = (Reply, bool);
type InFlight = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// Runs the command connection until the engine stops.
pub(super) async fn run(shared: Arc<Shared>, mut queue: mpsc::Receiver<Command>) {
    let client = match client(&shared) {
        Ok(c) => c,
        Err(e) => {
            shared.report(&format!("Redis: can't make the command client ({e})"));
            fail_all(&mut queue, "ERR iodine: the Redis client could not be made").await;
            return;
        }
    };
    let _connection = client.connect();
    let errors = {
        let shared = shared.clone();
        client.on_error(move |(e, _)| {
            shared.report(&format!("Redis commands: {}", e.details()));
            async { Ok(()) }
        })
    };
    let pinger = tokio::spawn(ping(shared.clone(), client.clone()));
    let mut applied = shared.applied.subscribe();
    let mut in_flight: FuturesOrdered<InFlight> = FuturesOrdered::new();
    // Where the replies of the commands in flight go, in the same order (kept apart from
    // the futures, so a stop answers them too).
    let mut reply_to: std::collections::VecDeque<Option<ReplyTo>> = Default::default();
    let mut next: Option<Command> = None;
    loop {
        let after = next.as_ref().map_or(0, |c| c.after);
        tokio::select! {
            biased;
            _ = shared.stopping() => break,
            Some((reply, publish)) = in_flight.next(), if !in_flight.is_empty() => {
                shared.stats.in_flight.fetch_sub(1, Ordering::AcqRel);
                let to = reply_to.pop_front().flatten();
                if !matches!(reply, Reply::Error(_)) {
                    shared.stats.commands.fetch_add(1, Ordering::Relaxed);
                    if publish {
                        shared.stats.messages_out.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if let Some(to) = to {
                    to(reply);
                }
            }
            _ = applied.wait_for(|at| *at >= after), if next.is_some() => {
                if let Some(mut command) = next.take() {
                    reply_to.push_back(command.reply.take());
                    in_flight.push_back(send(&client, command));
                }
            }
            command = queue.recv(), if next.is_none() && in_flight.len() < IN_FLIGHT => {
                match command {
                    // Counted from here: taken from the queue, not answered yet.
                    Some(c) => {
                        shared.stats.in_flight.fetch_add(1, Ordering::AcqRel);
                        next = Some(c);
                    }
                    None => break,
                }
            }
        }
    }
    pinger.abort();
    errors.abort();
    // What was never answered gets an error (the engine stopped).
    if let Some(c) = next.take() {
        if let Some(to) = c.reply {
            to(Reply::failure("ERR iodine: the Redis engine stopped"));
        }
    }
    drop(in_flight);
    for to in reply_to.into_iter().flatten() {
        to(Reply::failure("ERR iodine: the Redis engine stopped"));
    }
    queue.close();
    fail_all(&mut queue, "ERR iodine: the Redis engine stopped").await;
    let _ = tokio::time::timeout(Duration::from_millis(200), client.quit()).await;
}

/// Answers every queued command with an error.
async fn fail_all(queue: &mut mpsc::Receiver<Command>, why: &'static str) {
    queue.close();
    while let Some(c) = queue.recv().await {
        if let Some(to) = c.reply {
            to(Reply::failure(why));
        }
    }
}

fn client(shared: &Shared) -> Result<fred::clients::Client, fred::error::Error> {
    let mut config = shared.settings.config.clone();
    config.fail_fast = false; // the first connection is retried too
    Builder::from_config(config)
        .with_connection_config(|c| {
            c.max_command_attempts = 1;
            c.connection_timeout = Duration::from_secs(3);
            c.internal_command_timeout = Duration::from_secs(3);
            c.max_command_buffer_len = super::COMMAND_QUEUE;
            c.reconnect_on_auth_error = true;
            c.tcp = fred::types::config::TcpConfig {
                nodelay: Some(true),
                ..Default::default()
            };
        })
        .set_policy(ReconnectPolicy::new_exponential(
            0,
            super::subscriber::FIRST_BACKOFF.as_millis() as u32,
            super::subscriber::MAX_BACKOFF.as_millis() as u32,
            2,
        ))
        .build()
}

/// Sends one command; resolves with its answer.
fn send(client: &fred::clients::Client, command: Command) -> InFlight {
    let client = client.clone();
    Box::pin(async move {
        let mut args = command.args.into_iter();
        let name = args.next().unwrap_or_default();
        let publish = command.publish;
        let (cmd, hash) = match publish {
            true => ("PUBLISH".to_string(), ClusterHash::Random),
            false => (
                String::from_utf8_lossy(&name).into_owned(),
                ClusterHash::FirstKey,
            ),
        };
        let args: Vec<Value> = args.map(Value::Bytes).collect();
        let reply = match client
            .custom_raw(CustomCommand::new(cmd, hash, false), args)
            .await
        {
            Ok(frame) => reply_of(frame),
            Err(e) => Reply::failure(format!("ERR iodine: {}", e.details())),
        };
        (reply, publish)
    })
}

/// fred's frame as iodine's reply.
fn reply_of(frame: Resp3Frame) -> Reply {
    match frame {
        Resp3Frame::BlobString { data, .. }
        | Resp3Frame::BigNumber { data, .. }
        | Resp3Frame::VerbatimString { data, .. } => Reply::Bulk(data),
        Resp3Frame::SimpleString { data, .. } => Reply::Status(data),
        Resp3Frame::BlobError { data, .. } => Reply::Error(data),
        Resp3Frame::SimpleError { data, .. } => Reply::Error(Bytes::from(data.to_string())),
        Resp3Frame::Boolean { data, .. } => Reply::Integer(data as i64),
        Resp3Frame::Null => Reply::Nil,
        Resp3Frame::Number { data, .. } => Reply::Integer(data),
        Resp3Frame::Double { data, .. } => Reply::Double(data),
        Resp3Frame::Array { data, .. } | Resp3Frame::Push { data, .. } => {
            Reply::Array(data.into_iter().map(reply_of).collect())
        }
        Resp3Frame::Set { data, .. } => Reply::Array(data.into_iter().map(reply_of).collect()),
        Resp3Frame::Map { data, .. } => Reply::Array(
            data.into_iter()
                .flat_map(|(k, v)| [reply_of(k), reply_of(v)])
                .collect(),
        ),
        Resp3Frame::Hello { .. } | Resp3Frame::ChunkedString(_) => Reply::Nil,
    }
}

/// PINGs every `ping`; one unanswered by the next forces a reconnection.
async fn ping(shared: Arc<Shared>, client: fred::clients::Client) {
    let every = shared.settings.ping;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        ticker.tick().await;
        if !client.is_connected() {
            continue; // fred is reconnecting already
        }
        let answered = tokio::time::timeout(every, client.ping::<Value>(None)).await;
        if answered.is_err() {
            shared.report(&format!(
                "Redis commands: no answer to a PING in {} s; reconnecting",
                every.as_secs_f32()
            ));
            let _ = client.force_reconnection().await;
        }
    }
}
