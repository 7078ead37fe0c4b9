//! Ruby values held in Rust memory for the length of one operation (a Mustache render's
//! context stack, a JSON parse's pending values): the GC does not scan Rust memory, so each
//! such value is also pushed to a [`Marked`] object, which marks it (and so pins it, so
//! compaction can't move it either) while the object lives. The object itself is kept alive
//! by being on the native stack of the operation (which the GC scans).

use std::cell::RefCell;

use magnus::gc::Marker;
use magnus::typed_data::{DataTypeFunctions, Obj};
use magnus::value::Opaque;
use magnus::{prelude::*, Error, RModule, Ruby, Value};

/// The values, marked while the object lives. Borrow it shared across Ruby calls (a GC may
/// start in any of them and reads it), and mutably only between them.
#[derive(magnus::TypedData)]
#[magnus(class = "Iodine::Base::Marked", mark, free_immediately, size)]
pub struct Marked(pub RefCell<Vec<Opaque<Value>>>);

impl Marked {
    /// A new, empty set with room for `capacity` values.
    pub fn new(ruby: &Ruby, capacity: usize) -> Obj<Marked> {
        ruby.obj_wrap(Marked(RefCell::new(Vec::with_capacity(capacity))))
    }
}

impl DataTypeFunctions for Marked {
    fn mark(&self, marker: &Marker) {
        // A mutable borrow is never held across a Ruby call (the only place a GC can start),
        // so this always succeeds.
        // jump-safe: a RefCell borrow (Rust), no Ruby call.
        if let Ok(values) = self.0.try_borrow() {
            for v in values.iter() {
                marker.mark(*v);
            }
        }
    }
}

/// Defines `Iodine::Base::Marked` (no `new`: only Rust makes them).
pub fn init(ruby: &Ruby, base: RModule) -> Result<(), Error> {
    let class = base.define_class("Marked", ruby.class_object())?;
    class.undef_default_alloc_func();
    Ok(())
}
