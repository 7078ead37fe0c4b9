//! The iodine engine: everything the server does that does not need Ruby.
//!
//! The Ruby binding (`ext/iodine`) hands requests to Ruby through its bridge; this crate owns
//! sockets, protocols and limits, and is tested and benchmarked with cargo alone.
//!
//! Layout:
//! - [`log`]: leveled logging to stderr with the C gem's prefixes (`ERROR: `, `INFO: `, …).
//! - [`server`]: listeners (TCP, Unix; a TCP one spread over a cluster's workers, one
//!   `SO_REUSEPORT` socket each), the accept loop, connection tracking and shutdown.
//! - [`client`]: outgoing raw and WebSocket connections (`Iodine.connect`).
//! - [`cluster`]: pub/sub across processes: the master's hub, the workers' links, the wire.
//! - [`http`]: the HTTP/1.1 service on hyper: owned requests in, owned responses out, limits,
//!   error responses and the request log.
//! - [`json`]: JSON (RFC 8259): a strict parser into a sink or a tape, and the writers.
//! - [`link`]: a long-lived connection as the app sees it: bounded outgoing queue, events.
//! - [`mailbox`]: a connection's events, run one at a time and in order.
//! - [`mustache`]: Mustache templates: parser, compiled template, renderer over a `Context`.
//! - [`public`]: static files from a public folder (validators, ranges, gzip twins).
//! - [`pubsub`]: the process's pub/sub broker (exact channels and glob patterns).
//! - [`raw`]: raw TCP/Unix connections: listener, session, the `upgrade.tcp` head.
//! - [`reactor`]: a current-thread runtime the application's threads take turns to drive, so
//!   callbacks run where their connection's IO happens.
//! - [`redis`]: the Redis pub/sub engine: its two connections, RESP, the Redis process.
//! - `session`: the one driver of WebSocket and raw connections (timers, backpressure,
//!   batched vectored writes, the end), over a protocol codec.
//! - [`sse`]: Server-Sent Events: the wire format, the ping comment, the stream session.
//! - [`timers`]: one-shot and repeating timers that end at shutdown.
//! - [`tls`]: TLS on rustls: contexts (`Iodine::TLS`), the listeners' handshakes, clients'.
//! - [`util`]: URL percent-decoding and HTTP dates (`Iodine::Rack::Utils`).
//! - [`websocket`]: WebSocket: handshake, our RFC 6455 codec, close policy, limits, pings.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod cluster;
pub mod http;
pub mod json;
pub mod link;
pub mod log;
pub mod mailbox;
pub mod mustache;
pub mod public;
pub mod pubsub;
pub mod raw;
pub mod reactor;
pub mod redis;
pub mod server;
mod session;
pub mod sse;
pub mod stats;
pub mod timers;
pub mod tls;
pub mod util;
pub mod websocket;
