//! The iodine engine: everything the server does that does not need Ruby.
//!
//! The Ruby binding (`ext/iodine`) hands requests to Ruby through its bridge; this crate owns
//! sockets, protocols and limits, and is tested and benchmarked with cargo alone.
//!
//! Layout:
//! - [`log`]: leveled logging to stderr with the C gem's prefixes (`ERROR: `, `INFO: `, …).
//! - [`server`]: listeners (TCP, Unix), the accept loop, connection tracking and shutdown.
//! - [`http`]: the HTTP/1.1 service on hyper: owned requests in, owned responses out, limits,
//!   error responses and the request log.
//! - [`mailbox`]: a connection's events, run one at a time and in order.
//! - [`mustache`]: Mustache templates: parser, compiled template, renderer over a `Context`.
//! - [`pubsub`]: the process's pub/sub broker (exact channels and glob patterns).
//! - [`sse`]: the Server-Sent Events wire format (events, the ping comment, the head).
//! - [`timers`]: one-shot and repeating timers that end at shutdown.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod http;
pub mod log;
pub mod mailbox;
pub mod mustache;
pub mod pubsub;
pub mod server;
pub mod sse;
pub mod timers;
