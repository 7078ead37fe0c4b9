//! `Iodine::Base`: internal native helpers that lib/iodine.rb builds the public API on.

use std::time::Duration;

use iodine_engine::http::HttpSettings;
use iodine_engine::timers::Schedule;
use iodine_engine::websocket::WsSettings;
use magnus::{function, prelude::*, Error, RArray, RHash, RModule, Ruby, Value};

use super::option;
use crate::{bridge, server};

/// `Iodine::Base.listen_http(app, options)`: binds now, serves at start. Options (all
/// normalised by lib/iodine): `:address` (String/nil), `:port` (Integer), `:unix` (path or
/// nil), `:max_body` (bytes), `:max_head` (bytes), `:timeout`, `:head_timeout`,
/// `:body_timeout` (seconds), `:min_upload_rate` (bytes/s), `:max_clients`, `:log`,
/// `:max_msg` (bytes), `:ping` (seconds), `:tls` (an `Iodine::TLS` or nil; its handshake
/// must end within the head timeout), `:http2` (true/false), `:max_streams` (HTTP/2 streams
/// open at once per connection), `:metrics` (the path of the metrics page, or nil).
fn listen_http(ruby: &Ruby, app: Value, opts: RHash) -> Result<Value, Error> {
    let defaults = HttpSettings::default();
    let public = match opts.lookup::<_, Option<String>>(ruby.to_symbol("public"))? {
        Some(folder) => {
            let cache = option(
                ruby,
                opts,
                "cache_control",
                iodine_engine::public::CACHE_CONTROL.to_owned(),
            )?;
            let public = iodine_engine::public::Public::new(&folder, &cache).map_err(|e| {
                crate::errors::exception(
                    ruby.exception_arg_error(),
                    format!("the public folder {folder:?} can't be served: {e}"),
                )
            })?;
            Some(std::sync::Arc::new(public))
        }
        None => None,
    };
    let secs = |key: &str, default: Duration| -> Result<Duration, Error> {
        Ok(Duration::from_secs(option(
            ruby,
            opts,
            key,
            default.as_secs(),
        )?))
    };
    let secs_f64 = |key: &str, default: Duration| -> Result<Duration, Error> {
        super::seconds(ruby, option(ruby, opts, key, default.as_secs_f64())?)
    };
    let settings = HttpSettings {
        public,
        max_body: option(ruby, opts, "max_body", defaults.max_body)?,
        max_head: option(ruby, opts, "max_head", defaults.max_head)?,
        timeout: secs("timeout", defaults.timeout)?,
        head_timeout: secs_f64("head_timeout", defaults.head_timeout)?,
        body_timeout: secs_f64("body_timeout", defaults.body_timeout)?,
        min_upload_rate: option(ruby, opts, "min_upload_rate", defaults.min_upload_rate)?,
        max_clients: option(ruby, opts, "max_clients", defaults.max_clients)?,
        log: option(ruby, opts, "log", false)?,
        http2: option(ruby, opts, "http2", defaults.http2)?,
        metrics: opts
            .lookup::<_, Option<String>>(ruby.to_symbol("metrics"))?
            .map(std::sync::Arc::from),
        max_streams: option(ruby, opts, "max_streams", defaults.max_streams)?,
        websocket: WsSettings {
            max_msg: option(ruby, opts, "max_msg", defaults.websocket.max_msg)?,
            ping: secs("ping", defaults.websocket.ping)?,
            ..defaults.websocket
        },
        ..defaults
    };
    let host = super::option(ruby, opts, "address", "localhost".to_string())?;
    let tls = super::tls::acceptor(
        ruby,
        opts.lookup(ruby.to_symbol("tls"))?,
        // h2 first: the server's order decides when a client offers both.
        if settings.http2 {
            &["h2", "http/1.1"]
        } else {
            &["http/1.1"]
        },
        settings.head_timeout,
        &host,
        true,
    )?;
    let settings = HttpSettings { tls, ..settings };
    let bound = super::sockets::bind_listener(ruby, opts)?;
    let port = bound.port();
    let handler = crate::rack::RackApp::new(ruby, app, settings.tls.is_some(), port)?;
    server::add_http(bound, settings, handler).map_err(|e| {
        crate::errors::exception(
            ruby.exception_runtime_error(),
            format!("Couldn't open listening socket. {e}"),
        )
    })?;
    Ok(ruby.integer_from_i64(port as i64).as_value())
}

/// `Iodine::Base.start_server(io_threads, ruby_threads)`: builds the runtime, starts the
/// listeners and opens the bridge; returns the listeners' descriptions.
fn start_server(ruby: &Ruby, io_threads: usize, ruby_threads: usize) -> Result<RArray, Error> {
    // The bridge opens first: connections the kernel queued since `listen` are accepted as
    // soon as the runtime starts, and their requests must find it open.
    crate::rack::batch_replies(ruby_threads <= 1);
    // Inherited sockets no listener asked for are closed, as puma does.
    iodine_engine::server::activation::close_unclaimed();
    bridge::open(ruby_threads);
    let described = server::start(io_threads).map_err(|e| {
        bridge::close();
        crate::errors::exception(ruby.exception_runtime_error(), e.to_string())
    })?;
    if !iodine_engine::cluster::is_clustered() {
        super::redis::started_single();
    }
    Ok(ruby.ary_from_vec(described))
}

fn worker_loop(ruby: &Ruby) -> Result<bool, Error> {
    bridge::work(ruby)
}

fn stop_requested() -> bool {
    server::stop_requested()
}

fn request_stop() {
    server::request_stop()
}

/// Stops accepting and waits up to `grace` seconds for in-flight requests.
fn begin_drain() {
    server::begin_drain();
}

fn live_connections() -> usize {
    server::live_connections()
}

fn close_bridge() {
    bridge::close();
}

fn finish(ruby: &Ruby) -> Result<(), Error> {
    bridge::discard_pending();
    server::finish(ruby)?;
    // No timer fires any more: let their blocks go (subscriptions keep theirs).
    for id in server::stopped_timers() {
        crate::blocks::forget(ruby, id);
    }
    Ok(())
}

/// `Iodine::Base.schedule(block, first_ms, every_ms, repetitions)`: runs `block` on a worker
/// after `first_ms`, then every `every_ms` (nil: once) `repetitions` times (nil: forever).
/// Before `start` the timer waits for it.
fn schedule(
    ruby: &Ruby,
    block: Value,
    first_ms: u64,
    every_ms: Option<u64>,
    repetitions: Option<u64>,
) -> Result<Value, Error> {
    let id = crate::blocks::keep(ruby, block)?;
    let schedule = Schedule {
        first: Duration::from_millis(first_ms),
        every: every_ms.map(Duration::from_millis),
        repetitions,
    };
    if first_ms == 0 && every_ms.is_none() && server::is_running() {
        bridge::push(crate::blocks::run_block(id, true)); // `Iodine.run`: no timer needed
    } else {
        server::add_timer(id, schedule);
    }
    Ok(block)
}

/// `Iodine::Base.cancel_timer(block)`: stops the timer that runs `block`; false if none.
fn cancel_timer(ruby: &Ruby, block: Value) -> Result<bool, Error> {
    let Some(id) = crate::blocks::find(ruby, block)? else {
        return Ok(false);
    };
    let cancelled = server::cancel_timer(id);
    if cancelled {
        crate::blocks::forget(ruby, id);
    }
    Ok(cancelled)
}

/// `Iodine::Base.on_idle(block)`: runs `block` once, the next time the server is idle.
fn on_idle(ruby: &Ruby, block: Value) -> Result<Value, Error> {
    let id = crate::blocks::keep(ruby, block)?;
    bridge::on_idle(id);
    Ok(block)
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        // jump-safe: std's CPU count (Rust), no Ruby call.
        .unwrap_or(1)
}

fn log_message(level: u8, message: String) {
    let level = match level {
        1 => iodine_engine::log::Level::Fatal,
        2 => iodine_engine::log::Level::Error,
        3 => iodine_engine::log::Level::Warning,
        4 => iodine_engine::log::Level::Info,
        _ => iodine_engine::log::Level::Debug,
    };
    iodine_engine::log::write(level, format_args!("{message}"));
}

/// Defines the `Iodine::Base` helpers.
pub fn init(_ruby: &Ruby, base: RModule) -> Result<(), Error> {
    base.define_module_function("listen_http", function!(listen_http, 2))?;
    base.define_module_function("start_server", function!(start_server, 2))?;
    base.define_module_function("worker_loop", function!(worker_loop, 0))?;
    base.define_module_function("stop_requested?", function!(stop_requested, 0))?;
    base.define_module_function("clear_stop_flag", function!(server::clear_stop_flag, 0))?;
    base.define_module_function(
        "timer_ticks_skipped",
        function!(server::skipped_timer_ticks, 0),
    )?;
    base.define_module_function("request_stop", function!(request_stop, 0))?;
    base.define_module_function("begin_drain", function!(begin_drain, 0))?;
    base.define_module_function("live_connections", function!(live_connections, 0))?;
    base.define_module_function("close_bridge", function!(close_bridge, 0))?;
    base.define_module_function("finish", function!(finish, 0))?;
    base.define_module_function("cores", function!(cores, 0))?;
    base.define_module_function("schedule", function!(schedule, 4))?;
    base.define_module_function("on_idle", function!(on_idle, 1))?;
    base.define_module_function("cancel_timer", function!(cancel_timer, 1))?;
    base.define_module_function("log", function!(log_message, 2))?;
    Ok(())
}
