//! `Iodine.stats`: what the server is doing, from the engine's counters
//! (`iodine_engine::stats`) and the worker pool; and the figures of the `-metrics` page. In
//! a cluster, every process reads the workers' figures from the cluster's board (each worker
//! writes its own twice a second) and sums them.

use iodine_engine::stats::{self, board, Pool, Snapshot, KINDS};
use magnus::{function, Error, RHash, RModule, Ruby};

/// This process's worker pool and channels.
pub fn this_pool() -> Pool {
    let (threads, busy, queued) = crate::bridge::pool();
    Pool {
        threads: threads as u64,
        busy: busy as u64,
        queued: queued as u64,
        channels: iodine_engine::pubsub::broker().len() as u64,
    }
}

/// Every process to report: a cluster's workers (labelled by slot), or this process alone.
fn processes() -> Vec<stats::Process> {
    if board::exists() {
        return board::read()
            .into_iter()
            .map(|(slot, _, s, p)| (Some(slot.to_string()), s, p))
            .collect();
    }
    vec![(None, stats::snapshot(), this_pool())]
}

fn hash_of(ruby: &Ruby, s: &Snapshot, pool: &Pool) -> Result<RHash, Error> {
    let sym = |name: &str| ruby.to_symbol(name);
    let connections = ruby.hash_new();
    for (kind, n) in KINDS.iter().zip(s.open) {
        connections.aset(sym(kind.name()), n)?;
    }
    let requests = ruby.hash_new();
    for (i, n) in s.requests.iter().enumerate() {
        requests.aset(format!("{}xx", i + 1), *n)?;
    }
    let pool_hash = ruby.hash_new();
    pool_hash.aset(sym("threads"), pool.threads)?;
    pool_hash.aset(sym("busy"), pool.busy)?;
    pool_hash.aset(sym("queued"), pool.queued)?;
    let pubsub = ruby.hash_new();
    pubsub.aset(sym("channels"), pool.channels)?;
    pubsub.aset(sym("published"), s.published)?;
    pubsub.aset(sym("delivered"), s.delivered)?;
    pubsub.aset(sym("dropped"), s.dropped)?;
    let out = ruby.hash_new();
    out.aset(sym("connections"), connections)?;
    out.aset(sym("requests"), requests)?;
    out.aset(sym("bytes_in"), s.bytes_in)?;
    out.aset(sym("bytes_out"), s.bytes_out)?;
    out.aset(sym("pool"), pool_hash)?;
    out.aset(sym("pubsub"), pubsub)?;
    Ok(out)
}

/// `Iodine.stats`: `{connections: {http:, websocket:, sse:, raw:, client:}, requests:
/// {"1xx" => n, … "5xx" => n}, bytes_in:, bytes_out:, pool: {threads:, busy:, queued:},
/// pubsub: {channels:, published:, delivered:, dropped:}, pid:}`. In a cluster the figures
/// are the workers' sums, and `workers:` lists each one's (with `slot:` and `pid:`).
fn stats(ruby: &Ruby) -> Result<RHash, Error> {
    if !board::exists() {
        let out = hash_of(ruby, &stats::snapshot(), &this_pool())?;
        out.aset(ruby.to_symbol("pid"), std::process::id())?;
        return Ok(out);
    }
    let workers = board::read();
    let total = Snapshot::sum(workers.iter().map(|(_, _, s, _)| s));
    let out = hash_of(ruby, &total, &Pool::sum(workers.iter().map(|(.., p)| p)))?;
    out.aset(ruby.to_symbol("pid"), std::process::id())?;
    let list = ruby.ary_new();
    for (slot, pid, s, p) in &workers {
        let one = hash_of(ruby, s, p)?;
        one.aset(ruby.to_symbol("slot"), *slot)?;
        one.aset(ruby.to_symbol("pid"), *pid)?;
        list.push(one)?;
    }
    out.aset(ruby.to_symbol("workers"), list)?;
    Ok(out)
}

/// Defines `Iodine.stats` and gives the metrics page its source.
pub fn init(_ruby: &Ruby, iodine: RModule) -> Result<(), Error> {
    stats::set_source(processes);
    iodine.define_module_function("stats", function!(stats, 0))?;
    Ok(())
}
