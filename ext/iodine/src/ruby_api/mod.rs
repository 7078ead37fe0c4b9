//! The Ruby-visible API, one file per Ruby module.

mod base;
pub mod cluster;
pub mod connection;
mod iodine;
mod json;
mod mustache;
mod pubsub;
mod redis;
mod sockets;
pub mod stats;
mod tls;
mod utils;

use magnus::{prelude::*, Error, RHash, Ruby, TryConvert};

/// The server stops: a single process's Redis engines disconnect.
pub fn redis_stopped() {
    redis::stopped();
}

/// `secs` as a Duration; negative, NaN or too large (lib/iodine bounds every duration, so
/// only a caller of `Iodine::Base` gets here) is an ArgumentError, never a panic.
fn seconds(ruby: &Ruby, secs: f64) -> Result<std::time::Duration, Error> {
    std::time::Duration::try_from_secs_f64(secs).map_err(|e| {
        crate::errors::exception(
            ruby.exception_arg_error(),
            format!("{secs} seconds is no duration: {e}"),
        )
    })
}

/// The option `key` of `opts` (a Hash lib/iodine normalised), or `default` when it is absent
/// or nil.
fn option<T: TryConvert>(ruby: &Ruby, opts: RHash, key: &str, default: T) -> Result<T, Error> {
    let value = opts.lookup::<_, Option<T>>(ruby.to_symbol(key))?;
    // jump-safe: an Option; the lookup's Err (a jump included) already left through `?`.
    Ok(value.unwrap_or(default))
}

/// Defines `Iodine`, `Iodine::Base`, `Iodine::Mustache`, `Iodine::JSON`, `Iodine::TLS` and
/// `Iodine::Rack::Utils`.
pub fn init(ruby: &Ruby) -> Result<(), Error> {
    let iodine = ruby.define_module("Iodine")?;
    let base = iodine.define_module("Base")?;
    iodine::init(ruby, iodine)?;
    stats::init(ruby, iodine)?;
    base::init(ruby, base)?;
    crate::errors::init(ruby, base)?;
    crate::marked::init(ruby, base)?;
    crate::blocks::init(ruby);
    iodine_engine::reactor::set_locator(crate::server::reactor);
    mustache::init(ruby, iodine)?;
    json::init(ruby, iodine)?;
    pubsub::init(ruby, base)?;
    redis::init(ruby, base)?;
    sockets::init(ruby, base)?;
    tls::init(ruby, iodine, base)?;
    cluster::init(ruby, base)?;
    connection::init(ruby, iodine)?;
    utils::init(ruby, iodine, base)?;
    crate::rack::init(ruby, base)
}
