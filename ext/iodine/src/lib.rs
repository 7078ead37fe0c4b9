//! `iodine.so`: the Ruby binding of the iodine engine.
//!
//! Layout:
//! - [`gvl`]: every GVL crossing (the only hand-written `unsafe`).
//! - [`marked`]: Ruby values Rust holds during one operation, marked by the GC meanwhile.
//! - [`bridge`]: the task queue from IO threads to `Iodine.threads` Ruby worker threads.
//! - [`blocks`]: Ruby blocks Rust schedules (timers, `Iodine.run`), kept by id in a marked Hash.
//! - [`connection`]: WebSocket/SSE handlers' callbacks, in order per connection, and their
//!   pub/sub.
//! - [`rack`]: env building, `rack.input`, and turning Rack responses into engine responses.
//! - [`subscriptions`]: named subscriptions of a scope (the process, a connection).
//! - [`server`]: listeners, the runtime and the stop flag of this process.
//! - [`errors`]: logging app exceptions without letting them reach Rust frames.
//! - [`ruby_api`]: the Ruby-visible methods, one file per Ruby module.

mod blocks;
mod bridge;
mod connection;
mod errors;
mod gvl;
mod marked;
mod rack;
mod ruby_api;
mod server;
mod subscriptions;

use magnus::{Error, Ruby};

/// Requests are allocated on IO threads and freed on Ruby threads; glibc's malloc handles that
/// cross-thread pattern poorly (measured: ~7% of a hello-world request), mimalloc well.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[magnus::init(name = "iodine")]
fn init(ruby: &Ruby) -> Result<(), Error> {
    gvl::register_fork_handler();
    // systemd socket activation: the listening sockets handed to this process, for the
    // listeners of their addresses (read once, in the process that loads the gem).
    let inherited = iodine_engine::server::activation::descriptors_for_us()
        .filter_map(gvl::inherited_fd)
        .collect();
    iodine_engine::server::activation::offer(inherited);
    ruby_api::init(ruby)
}
