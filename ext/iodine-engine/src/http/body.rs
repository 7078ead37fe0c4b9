//! Receiving request bodies: small ones in memory, large ones spilled to an anonymous
//! temporary file, all within `max_body`.

use std::fs::File;
use std::io::{self, Write};
use std::time::Duration;

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
    /// The client stalled longer than the timeout (408).
    Timeout,
    /// The connection or the temporary file failed.
    Io(io::Error),
}

/// Receives the whole body, failing with `TooLarge` as soon as it passes `limit` bytes.
pub(crate) async fn receive(
    mut incoming: Incoming,
    limit: u64,
    stall: Duration,
) -> Result<RequestBody, BodyError> {
    if hyper::body::Body::is_end_stream(&incoming) {
        return Ok(RequestBody::Empty); // most requests: no body, no timer
    }
    let mut memory = BytesMut::new();
    let mut file: Option<File> = None;
    let mut total: u64 = 0;
    loop {
        let frame = match tokio::time::timeout(stall, incoming.frame()).await {
            Err(_) => return Err(BodyError::Timeout),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(BodyError::Io(io::Error::other(e))),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry nothing a Rack app can see
        };
        total += data.len() as u64;
        if total > limit {
            return Err(BodyError::TooLarge);
        }
        match file.as_mut() {
            Some(f) => f.write_all(&data).map_err(BodyError::Io)?,
            None if memory.len() + data.len() > MEMORY_LIMIT => {
                // Page-cache writes: short enough to do on the IO thread.
                let mut f = tempfile::tempfile().map_err(BodyError::Io)?;
                f.write_all(&memory).map_err(BodyError::Io)?;
                f.write_all(&data).map_err(BodyError::Io)?;
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
        Some(f) => RequestBody::File(f, total),
        None if memory.is_empty() => RequestBody::Empty,
        None => RequestBody::Memory(memory.freeze()),
    })
}
