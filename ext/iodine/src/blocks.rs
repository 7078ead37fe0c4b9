//! Ruby blocks that Rust schedules (`Iodine.run`, timers, `on_idle`). They live in a Hash
//! (id → Proc) that the GC marks; Rust holds only the id, so a block is freed as soon as it
//! is forgotten and nothing bare sits in a Rust collection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use magnus::value::Opaque;
use magnus::{prelude::*, ArgList, Error, RHash, Ruby, Value};

use crate::errors;

static STORE: OnceLock<Opaque<RHash>> = OnceLock::new();
static NEXT: AtomicU64 = AtomicU64::new(1);

fn store(ruby: &Ruby) -> RHash {
    // Set by `init`, which runs when the extension loads, before any block can be kept.
    ruby.get_inner(*STORE.get().expect("iodine: block store used before init"))
}

/// Keeps `block` alive until [`forget`]; returns its id.
pub fn keep(ruby: &Ruby, block: Value) -> Result<u64, Error> {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    store(ruby).aset(id, block)?;
    Ok(id)
}

/// Lets the block go (it is freed by the next GC once nothing else holds it).
pub fn forget(ruby: &Ruby, id: u64) {
    let _ = store(ruby).delete::<_, Value>(id);
}

/// Calls the block `id` (forgetting it first when `once`). An exception is logged; a jump
/// (`Thread#kill`, `throw`) is returned for the worker to hand to Ruby.
pub fn call(ruby: &Ruby, id: u64, once: bool) -> Result<(), Error> {
    let block: Option<Value> = store(ruby).get(id);
    if once {
        forget(ruby, id);
    }
    // None: forgotten meanwhile (the server stopped).
    block.map_or(Ok(()), |block| invoke(ruby, block, ()))
}

/// Calls the callable `id` with `(channel, message)` as binary Strings (a pub/sub message).
/// A subscription cancelled meanwhile gets nothing.
pub fn call_with_message(
    ruby: &Ruby,
    id: u64,
    channel: &[u8],
    message: &[u8],
) -> Result<(), Error> {
    let Some(callable) = store(ruby).get(id) else {
        return Ok(());
    };
    let args = (ruby.str_from_slice(channel), ruby.str_from_slice(message));
    invoke(ruby, callable, args)
}

/// `callable.call(*args)`, with exceptions logged and jumps returned.
fn invoke(ruby: &Ruby, callable: Value, args: impl ArgList) -> Result<(), Error> {
    callable
        .funcall::<_, _, Value>("call", args)
        .map(|_| ())
        .or_else(|e| errors::contain(ruby, e))
}

/// Creates the store.
pub fn init(ruby: &Ruby) {
    let hash = ruby.hash_new();
    ruby.gc_register_mark_object(hash);
    let _ = STORE.set(Opaque::from(hash));
}
