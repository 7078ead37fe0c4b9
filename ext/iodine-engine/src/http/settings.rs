//! Per-listener HTTP settings and their defaults (the C gem's defaults).

use std::time::Duration;

/// Limits and switches of one HTTP listener.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// Largest request body accepted, in bytes (413 beyond). Default 50 MiB.
    pub max_body: u64,
    /// Largest request head (request line + headers), in bytes (431 beyond). Default 32 KiB.
    /// At most 100 header lines are accepted (hyper's stack-allocated parser limit; setting
    /// a different count costs a heap-initialised table per request).
    pub max_head: usize,
    /// Keep-alive idle timeout, also the limit for receiving a request head. Default 40 s.
    pub timeout: Duration,
    /// Writes one access-log line per request to stderr.
    pub log: bool,
    /// Requests arrive over TLS (sets `rack.url_scheme` to https).
    pub tls: bool,
    /// How long shutdown lets a busy connection finish before closing it. Default 8 s.
    pub shutdown_grace: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            max_body: 50 * 1024 * 1024,
            max_head: 32 * 1024,
            timeout: Duration::from_secs(40),
            log: false,
            tls: false,
            shutdown_grace: Duration::from_secs(8),
        }
    }
}
