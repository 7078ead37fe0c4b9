//! `Iodine::Base.redis_*`: what `Iodine::PubSub::Redis` (lib/iodine/redis.rb) needs. The
//! engines are numbered in the order they were made; where each one's connections are
//! depends on the process (iodine_engine::redis explains why):
//! - one process (`-w 1`, a script): its own, as tasks on its IO runtime, from `start`;
//! - a cluster's master: its Redis process, through the hub (`cluster_pair_engine`,
//!   `redis_child_main` in the forked child);
//! - a worker: through the master (its uplink).
//!
//! Publishes and commands made before `start` wait (bounded) and go once the engine runs.
//! Replies run the app's block on a Ruby worker of the process that asked.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iodine_engine::cluster::{self, wire::Frame};
use iodine_engine::redis::{child, pending, Redis, Reply, ReplyTo, Settings, Stats};
use magnus::{function, prelude::*, Error, RArray, RModule, RString, Ruby, Value};
use parking_lot::Mutex;

use crate::errors::exception;
use crate::{blocks, bridge, server};

/// Most engines a process can make (they are numbered with one byte on the wire).
const MAX_ENGINES: usize = 255;
/// Publishes and commands that may wait for `start`.
const EARLY: usize = 1024;

struct Engine {
    settings: Arc<Settings>,
    /// The channels and patterns its hooks reported (the Redis process is told through the
    /// hub; a single process subscribes them at `start`).
    wanted: HashSet<(Bytes, bool)>,
    /// Its connections, in a single process that runs.
    local: Option<Arc<Redis>>,
}

static ENGINES: Mutex<Vec<Engine>> = Mutex::new(Vec::new());

/// What was asked of an engine before `start`.
enum Early {
    Publish(Bytes, Bytes),
    Command(Vec<Bytes>, ReplyTo),
}

static WAITING: Mutex<Vec<(u8, Early)>> = Mutex::new(Vec::new());

/// Where an engine's requests go from this process.
enum Route {
    /// This process holds the connections.
    Local(Arc<Redis>),
    /// Up to the master (a worker) or to the Redis process (the master).
    Cluster(Arc<dyn cluster::Uplink>),
    /// Not started yet.
    Waiting,
}

fn route(id: u8) -> Route {
    if let Some(uplink) = cluster::uplink() {
        return Route::Cluster(uplink);
    }
    match ENGINES
        .lock()
        .get(id as usize)
        .and_then(|e| e.local.clone())
    {
        Some(redis) => Route::Local(redis),
        None => Route::Waiting,
    }
}

fn engine_id(ruby: &Ruby, id: usize) -> Result<u8, Error> {
    if id < ENGINES.lock().len() {
        return Ok(id as u8);
    }
    Err(exception(
        ruby.exception_arg_error(),
        "no such Redis engine",
    ))
}

/// `redis_new(url, ping)`: checks the URL and numbers a new engine.
fn redis_new(ruby: &Ruby, url: RString, ping: i64) -> Result<usize, Error> {
    let url = url.to_string()?;
    if !(0..=255).contains(&ping) {
        return Err(exception(
            ruby.exception_arg_error(),
            "ping must be 0..255 seconds",
        ));
    }
    if cluster::is_clustered() {
        return Err(exception(
            ruby.exception_runtime_error(),
            "make Redis engines before Iodine.start (in the master): a running cluster can't add one",
        ));
    }
    let settings =
        Settings::parse(&url, ping as u64).map_err(|e| exception(ruby.exception_arg_error(), e))?;
    let mut engines = ENGINES.lock();
    if engines.len() >= MAX_ENGINES {
        return Err(exception(
            ruby.exception_arg_error(),
            "too many Redis engines",
        ));
    }
    engines.push(Engine {
        settings: Arc::new(settings),
        wanted: HashSet::new(),
        local: None,
    });
    let id = engines.len() - 1;
    drop(engines);
    // A single process that runs already: the engine starts now.
    if let Some(handle) = server::runtime_handle() {
        start_engine(id, &handle);
    }
    Ok(id)
}

/// `redis_interest(id, name, pattern, on)`: the engine hooks (in a worker they are only this
/// process's: the master tells the Redis process the cluster's).
fn redis_interest(
    ruby: &Ruby,
    id: usize,
    name: RString,
    pattern: bool,
    on: bool,
) -> Result<(), Error> {
    let id = engine_id(ruby, id)?;
    let name = Bytes::from(name.to_bytes().to_vec());
    if super::cluster::is_master() {
        if let Some(uplink) = cluster::uplink() {
            uplink.engine_interest(id, name.clone(), pattern, on);
        }
    } else if cluster::is_clustered() {
        return Ok(());
    }
    let mut engines = ENGINES.lock();
    let engine = &mut engines[id as usize];
    match on {
        true => engine.wanted.insert((name.clone(), pattern)),
        false => engine.wanted.remove(&(name.clone(), pattern)),
    };
    if let Some(local) = &engine.local {
        local.interest(name, pattern, on);
    }
    Ok(())
}

/// `redis_publish(id, channel, message)`: publishes through Redis.
fn redis_publish(
    ruby: &Ruby,
    id: usize,
    channel: RString,
    message: RString,
) -> Result<bool, Error> {
    let id = engine_id(ruby, id)?;
    super::pubsub::channel_fits(ruby, &channel.to_bytes())?;
    let channel = Bytes::from(channel.to_bytes().to_vec());
    let message = Bytes::from(message.to_bytes().to_vec());
    if message.len() > cluster::MAX_MESSAGE {
        return Err(exception(
            ruby.exception_arg_error(),
            format!(
                "a message of {} bytes is too large to publish",
                message.len()
            ),
        ));
    }
    send(id, Early::Publish(channel, message));
    Ok(true)
}

/// `redis_cmd(id, args, block)`: args are Strings (lib/iodine/redis.rb converted them); the
/// block (or nil) gets the reply on a Ruby worker of this process.
fn redis_cmd(ruby: &Ruby, id: usize, args: RArray, block: Value) -> Result<(), Error> {
    let id = engine_id(ruby, id)?;
    let mut list = Vec::with_capacity(args.len());
    for arg in args.into_iter() {
        let s = RString::try_convert(arg)?;
        list.push(Bytes::from(s.to_bytes().to_vec()));
    }
    match list.first() {
        None => return Err(exception(ruby.exception_arg_error(), "a Redis command is required")),
        Some(name) if iodine_engine::redis::refused_command(name) => {
            return Err(exception(
                ruby.exception_arg_error(),
                format!(
                    "{} can't be sent with cmd: subscribe with Iodine.subscribe (the engine subscribes in Redis)",
                    String::from_utf8_lossy(name)
                ),
            ))
        }
        Some(_) => {}
    }
    let reply_to: ReplyTo = if block.is_nil() {
        Box::new(|_| {})
    } else {
        let kept = blocks::keep(ruby, block)?;
        Box::new(move |reply| bridge::push(Box::new(ReplyJob { block: kept, reply })))
    };
    send(id, Early::Command(list, reply_to));
    Ok(())
}

/// Sends a publish or a command where it goes from this process.
fn send(id: u8, what: Early) {
    match (route(id), what) {
        (Route::Local(redis), Early::Publish(channel, message)) => redis.publish(channel, message),
        (Route::Local(redis), Early::Command(args, to)) => redis.command(args, to),
        (Route::Cluster(uplink), Early::Publish(channel, message)) => {
            uplink.to_engine(Frame::EnginePublish {
                engine: id,
                channel,
                message,
            });
        }
        (Route::Cluster(uplink), Early::Command(args, to)) => {
            let args = child::encode_args(&args);
            let request = pending::register(to);
            uplink.to_engine(Frame::Command {
                engine: id,
                id: request,
                args,
            });
        }
        (Route::Waiting, what) => {
            let mut waiting = WAITING.lock();
            if waiting.len() < EARLY {
                waiting.push((id, what));
                return;
            }
            drop(waiting);
            iodine_engine::warning!("Redis: {EARLY} requests wait for Iodine.start; dropping some");
            if let Early::Command(_, to) = what {
                to(Reply::failure(
                    "ERR iodine: too many Redis commands wait for Iodine.start",
                ));
            }
        }
    }
}

/// Sends what waited for `start` (a single process that started, or a cluster's master).
fn flush_waiting() {
    let waiting = std::mem::take(&mut *WAITING.lock());
    for (id, what) in waiting {
        send(id, what);
    }
}

/// Starts engine `id`'s connections on this process's runtime, delivering what Redis sends
/// through the broker.
fn start_engine(id: usize, handle: &tokio::runtime::Handle) {
    let mut engines = ENGINES.lock();
    let Some(engine) = engines.get_mut(id) else {
        return;
    };
    if engine.local.is_some() {
        return;
    }
    let (redis, mut deliveries) = Redis::start(
        engine.settings.clone(),
        engine.wanted.iter().cloned(),
        handle,
    );
    engine.local = Some(Arc::new(redis));
    drop(engines);
    handle.spawn(async move {
        while let Some(d) = deliveries.recv().await {
            iodine_engine::pubsub::broker().deliver_from_redis(
                d.pattern.as_ref(),
                &d.channel,
                &d.message,
            );
        }
    });
}

/// A single process started its server: its engines connect, and what waited goes.
pub fn started_single() {
    if let Some(handle) = server::runtime_handle() {
        let count = ENGINES.lock().len();
        for id in 0..count {
            start_engine(id, &handle);
        }
    }
    flush_waiting();
}

/// A cluster's master started its hub: the engines' interest so far, and what waited, go to
/// the hub (for the Redis processes it will fork).
pub fn started_master() {
    if let Some(uplink) = cluster::uplink() {
        for (id, engine) in ENGINES.lock().iter().enumerate() {
            for (name, pattern) in &engine.wanted {
                uplink.engine_interest(id as u8, name.clone(), *pattern, true);
            }
        }
    }
    flush_waiting();
}

/// The server stops: a single process's engines disconnect (before its runtime goes; a
/// request that holds one meanwhile finds it stopped).
pub fn stopped() {
    for engine in ENGINES.lock().iter_mut() {
        if let Some(redis) = engine.local.take() {
            redis.stop();
        }
    }
}

/// A forked worker: what waited and what was asked belongs to its parent.
pub fn forked() {
    let waiting = std::mem::take(&mut *WAITING.lock());
    std::mem::forget(waiting); // the blocks are its parent's: never called here
    pending::forget_all();
}

/// `redis_display_url(id)`: the engine's URL with its password hidden (for `inspect`).
fn redis_display_url(ruby: &Ruby, id: usize) -> Result<String, Error> {
    let id = engine_id(ruby, id)?;
    Ok(ENGINES.lock()[id as usize].settings.display_url())
}

/// `redis_count`: how many engines were made (the master forks a Redis process for each).
fn redis_count() -> usize {
    ENGINES.lock().len()
}

/// `redis_stats(id)`: the engine's counters, as a Hash (from the Redis process in a cluster,
/// waiting up to a second for it).
fn redis_stats(ruby: &Ruby, id: usize) -> Result<magnus::RHash, Error> {
    let id = engine_id(ruby, id)?;
    let stats = match route(id) {
        Route::Local(redis) => redis.stats(),
        Route::Waiting => Stats::default(),
        Route::Cluster(uplink) => {
            let (tx, rx) = std::sync::mpsc::channel();
            let request = pending::register(Box::new(move |reply| {
                let _ = tx.send(reply); // jump-safe: a Rust channel (the asker may have left).
            }));
            uplink.to_engine(Frame::Command {
                engine: id,
                id: request,
                args: child::encode_args(&[]),
            });
            let reply = crate::gvl::without_gvl(
                ruby,
                move || rx.recv_timeout(Duration::from_secs(1)),
                || {},
            )?;
            match reply {
                Ok(reply) => Stats::from_reply(&reply).unwrap_or_default(), // jump-safe: an Option, no Ruby call.
                // jump-safe: a Rust channel's timeout (the Redis process did not answer).
                Err(_) => {
                    pending::complete(request, Reply::Nil);
                    Stats::default()
                }
            }
        }
    };
    let hash = ruby.hash_new();
    hash.aset(ruby.to_symbol("connected"), stats.connected)?;
    hash.aset(ruby.to_symbol("reconnects"), stats.reconnects)?;
    hash.aset(ruby.to_symbol("messages_in"), stats.messages_in)?;
    hash.aset(ruby.to_symbol("messages_out"), stats.messages_out)?;
    hash.aset(ruby.to_symbol("commands"), stats.commands)?;
    hash.aset(ruby.to_symbol("queued"), stats.queued)?;
    Ok(hash)
}

/// `redis_child_main(id)`: the forked Redis process of engine `id` runs its engine until the
/// master's end of its pair closes.
fn redis_child_main(ruby: &Ruby, id: usize) -> Result<(), Error> {
    let id = engine_id(ruby, id)?;
    let Some(stream) = super::cluster::forked_engine_child() else {
        return Err(exception(
            ruby.exception_runtime_error(),
            "no socket pair for the Redis process",
        ));
    };
    forked();
    // The listeners inherited from the master are not this process's to hold open.
    server::discard_pending();
    let settings = ENGINES.lock()[id as usize].settings.clone();
    let ended = crate::gvl::without_gvl(ruby, move || child::run(stream, settings), || {})?;
    if let Err(e) = ended {
        iodine_engine::error!("Redis process: {e}");
    }
    Ok(())
}

/// Calls a `cmd` block with its reply.
struct ReplyJob {
    block: u64,
    reply: Reply,
}

impl bridge::Job for ReplyJob {
    fn run(self: Box<Self>, ruby: &Ruby) -> Result<(), Error> {
        let block = blocks::get(ruby, self.block);
        blocks::forget(ruby, self.block);
        let Some(block) = block else {
            return Ok(());
        };
        let value = to_ruby(ruby, &self.reply)?;
        blocks::invoke(ruby, block, (value,))
    }
}

/// A reply as Ruby sees it: bulk → binary String, integer → Integer, double → Float, status
/// → String, nil → nil, array → Array, error → an `Iodine::PubSub::Redis::Error`.
fn to_ruby(ruby: &Ruby, reply: &Reply) -> Result<Value, Error> {
    Ok(match reply {
        Reply::Nil => ruby.qnil().as_value(),
        Reply::Integer(n) => ruby.integer_from_i64(*n).as_value(),
        Reply::Double(d) => ruby.float_from_f64(*d).as_value(),
        Reply::Bulk(b) => ruby.str_from_slice(b).as_value(),
        Reply::Status(s) => ruby.str_new(&String::from_utf8_lossy(s)).as_value(),
        Reply::Error(e) => {
            let class: magnus::RClass = ruby
                .class_object()
                .const_get::<_, RModule>("Iodine")?
                .const_get::<_, RModule>("PubSub")?
                .const_get::<_, magnus::RClass>("Redis")?
                .const_get("Error")?;
            class.new_instance((ruby.str_new(&String::from_utf8_lossy(e)),))?
        }
        Reply::Array(items) => {
            let list = ruby.ary_new_capa(items.len());
            for item in items {
                list.push(to_ruby(ruby, item)?)?;
            }
            list.as_value()
        }
    })
}

/// Defines the Redis helpers under `Iodine::Base`.
pub fn init(_ruby: &Ruby, base: RModule) -> Result<(), Error> {
    base.define_module_function("redis_new", function!(redis_new, 2))?;
    base.define_module_function("redis_interest", function!(redis_interest, 4))?;
    base.define_module_function("redis_publish", function!(redis_publish, 3))?;
    base.define_module_function("redis_cmd", function!(redis_cmd, 3))?;
    base.define_module_function("redis_stats", function!(redis_stats, 1))?;
    base.define_module_function("redis_count", function!(redis_count, 0))?;
    base.define_module_function("redis_display_url", function!(redis_display_url, 1))?;
    base.define_module_function("redis_child_main", function!(redis_child_main, 1))?;
    Ok(())
}
