//! Receiving request bodies: small ones in memory, large ones spilled to an anonymous
//! temporary file, all within `max_body`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// Bodies up to this size stay in memory; larger ones go to a temporary file.
pub const MEMORY_LIMIT: usize = 64 * 1024;

/// A fully received request body.
#[derive(Debug, Default)]
pub enum RequestBody {
    /// No body.
    #[default]
    Empty,
    /// A body kept in memory.
    Memory(Bytes),
    /// A body spilled to an unlinked temporary file, with its length.
    File(File, u64),
}

impl RequestBody {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            RequestBody::Empty => 0,
            RequestBody::Memory(b) => b.len() as u64,
            RequestBody::File(_, n) => *n,
        }
    }

    /// Whether there is no body.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a body could not be received.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Larger than the limit (413).
    TooLarge,
    /// Too slow: past the deadline, or paused too long (408).
    Timeout,
    /// The client sent a malformed body or went away (400, logged at debug level).
    Client(io::Error),
    /// The server could not store the body: temp file, disk full, out of descriptors (500,
    /// logged as an error).
    Server(io::Error),
}

/// How long a body may take: `base` plus `1 / min_rate` seconds per byte received, and never
/// a pause longer than `base` between two pieces (`min_rate` 0: only pauses are limited).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pace {
    pub base: Duration,
    pub min_rate: u64,
}

impl Pace {
    fn deadline(&self, started: Instant, last: Instant, received: u64) -> Instant {
        if self.min_rate == 0 {
            return last + self.base; // no minimum rate: only pauses are limited
        }
        let allowance = Duration::from_secs_f64(received as f64 / self.min_rate as f64);
        (started + self.base + allowance).min(last + self.base)
    }
}

/// Size of the write buffer in front of a spilled body's temporary file.
const SPILL_BUFFER: usize = 256 * 1024;

/// Receives the whole body, failing with `TooLarge` as soon as it passes `limit` bytes and
/// with `Timeout` when it is slower than `pace` allows. One timer per body, re-armed only when
/// it fires (not one per frame).
pub(crate) async fn receive(
    mut incoming: Incoming,
    limit: u64,
    pace: Pace,
) -> Result<RequestBody, BodyError> {
    if hyper::body::Body::is_end_stream(&incoming) {
        return Ok(RequestBody::Empty); // most requests: no body, no timer
    }
    let started = Instant::now();
    let mut last = started;
    let mut memory = BytesMut::new();
    let mut file: Option<BufWriter<File>> = None;
    let mut total: u64 = 0;
    let timer = tokio::time::sleep_until(pace.deadline(started, last, 0).into());
    tokio::pin!(timer);
    loop {
        let frame = tokio::select! {
            biased;
            frame = incoming.frame() => frame,
            _ = &mut timer => {
                let deadline = pace.deadline(started, last, total);
                if deadline <= Instant::now() {
                    return Err(BodyError::Timeout);
                }
                timer.as_mut().reset(deadline.into());
                continue;
            }
        };
        let frame = match frame {
            None => break,
            Some(Err(e)) => return Err(BodyError::Client(io::Error::other(e))),
            Some(Ok(frame)) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry nothing a Rack app can see
        };
        last = Instant::now();
        total += data.len() as u64;
        if total > limit {
            return Err(BodyError::TooLarge);
        }
        match file.as_mut() {
            Some(f) => f.write_all(&data).map_err(BodyError::Server)?,
            None if memory.len() + data.len() > MEMORY_LIMIT => {
                // Page-cache writes, buffered: short enough to do on the IO thread.
                let f = tempfile::tempfile().map_err(BodyError::Server)?;
                let mut f = BufWriter::with_capacity(SPILL_BUFFER, f);
                f.write_all(&memory).map_err(BodyError::Server)?;
                f.write_all(&data).map_err(BodyError::Server)?;
                memory = BytesMut::new();
                file = Some(f);
            }
            None if memory.is_empty() && total == data.len() as u64 => {
                // Usually the whole body arrives in one frame: keep it without copying.
                memory = BytesMut::from(data);
            }
            None => memory.extend_from_slice(&data),
        }
    }
    Ok(match file {
        Some(f) => {
            let f = f
                .into_inner()
                .map_err(|e| BodyError::Server(e.into_error()))?;
            RequestBody::File(f, total)
        }
        None if memory.is_empty() => RequestBody::Empty,
        None => RequestBody::Memory(memory.freeze()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_grows_with_the_bytes_and_caps_pauses() {
        let pace = Pace {
            base: Duration::from_secs(30),
            min_rate: 1000,
        };
        let t0 = Instant::now();
        assert_eq!(pace.deadline(t0, t0, 0), t0 + Duration::from_secs(30));
        // 10 kB at >= 1 kB/s buys 10 more seconds...
        let last = t0 + Duration::from_secs(35);
        assert_eq!(
            pace.deadline(t0, last, 10_000),
            t0 + Duration::from_secs(40)
        );
        // ...but never more than `base` after the last piece.
        let last = t0 + Duration::from_secs(1);
        assert_eq!(
            pace.deadline(t0, last, 1_000_000),
            last + Duration::from_secs(30)
        );
    }
}
