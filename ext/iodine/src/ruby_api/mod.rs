//! The Ruby-visible API, one file per Ruby module.

mod base;
pub mod cluster;
pub mod connection;
mod iodine;
mod mustache;
mod pubsub;
mod sockets;
mod utils;

use magnus::{prelude::*, Error, Ruby};

/// Defines `Iodine`, `Iodine::Base`, `Iodine::Mustache` and `Iodine::Rack::Utils`.
pub fn init(ruby: &Ruby) -> Result<(), Error> {
    let iodine = ruby.define_module("Iodine")?;
    let base = iodine.define_module("Base")?;
    iodine::init(ruby, iodine)?;
    base::init(ruby, base)?;
    crate::errors::init(ruby, base)?;
    crate::blocks::init(ruby);
    mustache::init(ruby, iodine)?;
    pubsub::init(ruby, base)?;
    sockets::init(ruby, base)?;
    cluster::init(ruby, base)?;
    connection::init(ruby, iodine)?;
    utils::init(ruby, iodine, base)?;
    crate::rack::init(ruby, base)
}
