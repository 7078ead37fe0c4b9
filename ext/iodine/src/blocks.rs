//! Ruby blocks that Rust schedules (`Iodine.run`, timers, `on_idle`). They live in a Hash
//! (id → Proc) that the GC marks; Rust holds only the id, so a block is freed as soon as it
//! is forgotten and nothing bare sits in a Rust collection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use magnus::rb_sys::AsRawValue;
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

/// The value kept as `id` (None once forgotten).
pub fn get(ruby: &Ruby, id: u64) -> Option<Value> {
    store(ruby).get(id)
}

/// The id `block` (this very object) is kept under, if it is.
pub fn find(ruby: &Ruby, block: Value) -> Result<Option<u64>, Error> {
    let mut found = None;
    store(ruby).foreach(|id: u64, kept: Value| {
        if kept.as_raw() == block.as_raw() {
            found = Some(id);
            return Ok(magnus::r_hash::ForEach::Stop);
        }
        Ok(magnus::r_hash::ForEach::Continue)
    })?;
    Ok(found)
}

/// Lets the block go (it is freed by the next GC once nothing else holds it).
pub fn forget(ruby: &Ruby, id: u64) {
    // jump-safe: rb_hash_delete on our own store with an Integer key runs no Ruby code and checks no interrupts; its only Err would be NoMemoryError.
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

/// The job that runs block `id` (forgetting it after when `once`).
pub fn run_block(id: u64, once: bool) -> crate::bridge::Task {
    Box::new(BlockJob { id, once })
}

/// The job that calls callable `block` with a pub/sub message.
pub fn run_message(
    block: u64,
    channel: bytes::Bytes,
    message: bytes::Bytes,
) -> crate::bridge::Task {
    Box::new(MessageJob {
        block,
        channel,
        message,
    })
}

struct BlockJob {
    id: u64,
    once: bool,
}

impl crate::bridge::Job for BlockJob {
    fn run(self: Box<Self>, ruby: &Ruby) -> Result<(), Error> {
        call(ruby, self.id, self.once)
    }
}

struct MessageJob {
    block: u64,
    channel: bytes::Bytes,
    message: bytes::Bytes,
}

impl crate::bridge::Job for MessageJob {
    fn run(self: Box<Self>, ruby: &Ruby) -> Result<(), Error> {
        call_with_message(ruby, self.block, &self.channel, &self.message)
    }
}

/// `callable.call(*args)`, with exceptions logged and jumps returned.
pub fn invoke(ruby: &Ruby, callable: Value, args: impl ArgList) -> Result<(), Error> {
    callable
        .funcall::<_, _, Value>("call", args)
        .map(|_| ())
        .or_else(|e| errors::contain(ruby, e))
}

/// Creates the store.
pub fn init(ruby: &Ruby) {
    let hash = ruby.hash_new();
    ruby.gc_register_mark_object(hash);
    // jump-safe: OnceLock::set (Rust): a second init changes nothing.
    let _ = STORE.set(Opaque::from(hash));
}
