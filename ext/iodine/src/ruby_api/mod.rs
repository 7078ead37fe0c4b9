//! The Ruby-visible API, one file per Ruby module.

mod base;
mod iodine;

use magnus::{prelude::*, Error, Ruby};

/// Defines `Iodine` and `Iodine::Base`.
pub fn init(ruby: &Ruby) -> Result<(), Error> {
    let iodine = ruby.define_module("Iodine")?;
    let base = iodine.define_module("Base")?;
    iodine::init(ruby, iodine)?;
    base::init(ruby, base)?;
    crate::rack::init(ruby, base)
}
