//! Public module functions of `Iodine` implemented in Rust (the rest is in lib/iodine.rb).

use magnus::{function, Error, RModule, Ruby};

/// The server runs in this process, or this process is a running cluster's master.
fn running() -> bool {
    crate::server::is_running() || super::cluster::is_master()
}

fn verbosity() -> i64 {
    iodine_engine::log::level() as i64
}

fn set_verbosity(ruby: &Ruby, level: magnus::Value) -> Result<RModule, Error> {
    let level = magnus::Integer::from_value(level)
        .ok_or_else(|| {
            crate::errors::exception(ruby.exception_type_error(), "verbosity must be an Integer")
        })?
        .to_i64()?;
    iodine_engine::log::set_level(level.clamp(0, 99) as u8);
    ruby.define_module("Iodine")
}

/// Defines `Iodine.running?`, `Iodine.verbosity` and `Iodine.verbosity=`.
pub fn init(_ruby: &Ruby, iodine: RModule) -> Result<(), Error> {
    iodine.define_module_function("running?", function!(running, 0))?;
    iodine.define_module_function("verbosity", function!(verbosity, 0))?;
    iodine.define_module_function("verbosity=", function!(set_verbosity, 1))?;
    Ok(())
}
